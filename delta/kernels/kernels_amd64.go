//go:build amd64 && !noasm

package kernels

func (pr *product) compute() { pr.computeGeneric() }

func tileSize(*product) (rows, cols int) { return 1, 16 }

func dot(a, b []float32) float32         { return dotGeneric(a, b) }
func axpy(alpha float32, x, y []float32) { axpyGeneric(alpha, x, y) }
func scale(alpha float32, x []float32)   { scaleGeneric(alpha, x) }
