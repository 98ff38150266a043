// Package e2e holds end-to-end tests that run real GGUF models through
// llama.cpp beside the Go delta: training against a frozen template and
// generation with a delta. They live apart from package control, whose
// own tests use fake models and never touch cgo.
package e2e
