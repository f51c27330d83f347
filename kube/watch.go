package kube

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/watch"
)

// watchIface is a Kubernetes watch.
type watchIface = watch.Interface

// waitWatch waits until check says done, re-checking on every change a watch reports rather
// than polling: check lists what it needs and returns the list's resourceVersion, from which
// the watch starts, so that no change between the check and the watch is missed. A watch
// that ends (the server closes watches after a while, or the resourceVersion expired) is
// restarted from a fresh check. It returns check's error, or ctx's when ctx ends first.
func waitWatch(ctx context.Context, check func(context.Context) (rv string, done bool, err error),
	start func(ctx context.Context, rv string) (watch.Interface, error)) error {
	for {
		rv, done, err := check(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if done {
			return nil
		}
		w, err := start(ctx, rv)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch: %w", err)
		}
		done, err = drain(ctx, w, check)
		w.Stop()
		if err != nil || done {
			return err
		}
	}
}

// drain re-checks on each event of w until done, an error, or the end of w (false, nil).
func drain(ctx context.Context, w watch.Interface, check func(context.Context) (string, bool, error)) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return false, nil // restart from a fresh list
			}
			if ev.Type == watch.Bookmark {
				continue
			}
			_, done, err := check(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return false, ctx.Err()
				}
				return false, err
			}
			if done {
				return true, nil
			}
		}
	}
}

// timeAfter is time.After with a floor of one second, for retrying a watch the API server
// refused.
func timeAfter(d time.Duration) <-chan time.Time {
	return time.After(max(d, time.Second))
}
