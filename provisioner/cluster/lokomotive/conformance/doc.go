// Package conformance checks Racker's Lokomotive configuration against
// Lokomotive v0.9.0's own code: the files bootstrap writes are loaded by
// Lokomotive's config loader, decoded and validated by its bare-metal
// platform, and rendered into the Terraform file lokoctl would run.
//
// It is a module of its own so that Racker's binary never inherits
// Lokomotive's Kubernetes and Helm dependencies; `make test` runs it.
package conformance
