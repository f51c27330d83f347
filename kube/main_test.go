package kube_test

import (
	"os"
	"testing"

	"teal.dev/teal/internal/kubetest"
)

// env is the package's control plane (etcd, kube-apiserver, controller manager, scheduler,
// kwok), started once for all tests.
var env kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Run(m, &env)) }
