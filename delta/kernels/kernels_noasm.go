//go:build !amd64 || noasm

package kernels

// The pure-Go kernels need no scratch memory.
const scratchFloats, inlineScratchFloats = 0, 0

func (pr *product) compute([]float32) { pr.computeByRows(dot, axpy) }

// The pure-Go kernels work a row at a time and pack nothing, so any split
// is as good as another.
func (pr *product) grain() grain { return grain{rows: 1, cols: 16} }

func dot(a, b []float32) float32         { return dotGeneric(a, b) }
func axpy(alpha float32, x, y []float32) { axpyGeneric(alpha, x, y) }
func scale(alpha float32, x []float32)   { scaleGeneric(alpha, x) }

func expShifted(x []float32, shift float32) float32 { return expShiftedGeneric(x, shift) }

func maxOf(x []float32) float32 { return maxGeneric(x) }

func sigmoid(dst, x []float32) { sigmoidGeneric(dst, x) }

func adamW(params, grads, m, v []float32, s *AdamWStep) { adamWGeneric(params, grads, m, v, s) }
