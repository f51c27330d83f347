package api

import (
	"teal.dev/teal"
	"teal.dev/teal/artifact"
	"teal.dev/teal/local"
)

// The implementations the server is wired with in cmd/teal. They cannot assert these
// interfaces themselves (package teal cannot import api), so the assertions live here.
var (
	_ Controller    = (*teal.Controller)(nil)
	_ ArtifactStore = (*artifact.Store)(nil)
	_ LogSource     = (*local.Provider)(nil)
)
