//go:build amd64 && !noasm

package kernels

// The tiled product follows the GotoBLAS/BLIS scheme with A left in place:
// for each block of nc columns and kc steps of k, the block of b is packed
// into nr-wide panels (a few hundred KB, so it stays in L2), and then every
// mr rows of a are multiplied with each panel by a register-blocked
// micro-kernel. The mr rows of a (a few KB) stay in L1 across the panels, so
// only b needs copying; its packing costs O(n·k) against O(m·n·k) work.

// A microKernel computes one mr×nr tile of c; see kernel6x16AVX2.
type microKernel struct {
	mr, nr int
	avx512 bool
}

// tile calls the assembly directly rather than through a func value, which
// would make the compiler move every buffer it is given to the heap.
func (kern microKernel) tile(k int, a *float32, rowStep, kStep uintptr, b, c *float32, ldc uintptr, accumulate bool) {
	if kern.avx512 {
		kernel12x32AVX512(k, a, rowStep, kStep, b, c, ldc, accumulate)
	} else {
		kernel6x16AVX2(k, a, rowStep, kStep, b, c, ldc, accumulate)
	}
}

const (
	// kcMax bounds the k steps per packed block. Products with k ≤ 384
	// (the model's 288) run in one block, so c is written once; larger k
	// is cut into equal blocks no longer than this.
	kcMax = 384
	// scratchFloats is a pool thread's packing memory: kcMax×320, so the
	// model's 288-wide products pack all their columns at once (480 KB,
	// inside Zen's 1 MB L2) and a is read from memory only once.
	scratchFloats = kcMax * 320
	// inlineScratchFloats is the packing memory on the stack of calls made
	// without a free pool; 96 KB keeps it below the compiler's limit for
	// stack variables.
	inlineScratchFloats = kcMax * 64
	// mrMax and nrMax bound the tile of any micro-kernel.
	mrMax, nrMax = 12, 32
)

func (pr *product) computeTiled(kern microKernel, scratch []float32) {
	m, n, k := pr.m, pr.n, pr.k
	mr, nr := kern.mr, kern.nr

	kc := ceilDiv(k, ceilDiv(k, kcMax))
	ncMax := len(scratch) / kc / nr * nr
	nc := roundUp(ceilDiv(n, ceilDiv(n, ncMax)), nr)

	// Strides of a in bytes between rows of the tile and between k steps.
	rowStep, kStep := uintptr(pr.lda)*4, uintptr(4)
	if pr.l == tn {
		rowStep, kStep = 4, uintptr(pr.lda)*4
	}
	ldc := uintptr(pr.ldc) * 4

	// aEdge holds the last rows of a when fewer than mr remain, so that
	// the kernel does not read past the end of a; cEdge receives a tile
	// that sticks out of c.
	var aEdge [mrMax * kcMax]float32
	var cEdge [mrMax * nrMax]float32

	for j0 := 0; j0 < n; j0 += nc {
		w := min(nc, n-j0)
		for p0 := 0; p0 < k; p0 += kc {
			kb := min(kc, k-p0)
			pr.packB(scratch, nr, j0, w, p0, kb)
			accumulate := pr.accumulate || p0 > 0
			for i0 := 0; i0 < m; i0 += mr {
				h := min(mr, m-i0)
				a, rs, ks := pr.aAt(i0, p0), rowStep, kStep
				if h < mr {
					pr.copyRows(aEdge[:], i0, h, p0, kb)
					a, rs, ks = &aEdge[0], uintptr(kb)*4, 4
				}
				for q := 0; q*nr < w; q++ {
					b := &scratch[q*kb*nr]
					cols := min(nr, w-q*nr)
					c0 := i0*pr.ldc + j0 + q*nr
					if h == mr && cols == nr {
						kern.tile(kb, a, rs, ks, b, &pr.c[c0], ldc, accumulate)
						continue
					}
					kern.tile(kb, a, rs, ks, b, &cEdge[0], uintptr(nr)*4, false)
					for r := range h {
						dst := pr.c[c0+r*pr.ldc : c0+r*pr.ldc+cols]
						src := cEdge[r*nr : r*nr+cols]
						if accumulate {
							for j, v := range src {
								dst[j] += v
							}
						} else {
							copy(dst, src)
						}
					}
				}
			}
		}
	}
}

func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// aAt points at element (i, p) of the m×k operand a, however it is stored.
func (pr *product) aAt(i, p int) *float32 {
	if pr.l == tn {
		return &pr.a[p*pr.lda+i]
	}
	return &pr.a[i*pr.lda+p]
}

// copyRows copies rows [i0, i0+h) and steps [p0, p0+kb) of the operand a
// into dst as an h×kb row-major matrix.
func (pr *product) copyRows(dst []float32, i0, h, p0, kb int) {
	for r := range h {
		row := dst[r*kb : (r+1)*kb]
		if pr.l == tn {
			for p := range row {
				row[p] = pr.a[(p0+p)*pr.lda+i0+r]
			}
		} else {
			copy(row, pr.a[(i0+r)*pr.lda+p0:])
		}
	}
}

// packB copies columns [j0, j0+w) and steps [p0, p0+kb) of the k×n operand b
// into dst as panels of nr columns: panel q holds kb rows of nr floats,
// columns past w are zero. It is O(n·k) against the product's O(m·n·k), but
// in plain Go it took a third of the time of the model's 1024×288×768
// product, so full panels are copied (NN, TN) or transposed 8×8 at a time
// (NT) in assembly; the ragged rest is done element by element.
func (pr *product) packB(dst []float32, nr, j0, w, p0, kb int) {
	for q := 0; q*nr < w; q++ {
		panel := dst[q*kb*nr : (q+1)*kb*nr]
		cols := min(nr, w-q*nr)
		jq := j0 + q*nr
		if pr.l != nt {
			pr.packRows(panel, nr, cols, jq, p0, kb)
		} else {
			pr.packColumns(panel, nr, cols, jq, p0, kb)
		}
	}
}

// packRows packs one panel of b stored k×n: each panel row is a piece of a
// row of b.
func (pr *product) packRows(panel []float32, nr, cols, jq, p0, kb int) {
	if cols == nr {
		copyRowsAVX(&panel[0], uintptr(nr)*4, &pr.b[p0*pr.ldb+jq], uintptr(pr.ldb)*4, kb, nr)
		return
	}
	for p := range kb {
		row := panel[p*nr : (p+1)*nr]
		copy(row[:cols], pr.b[(p0+p)*pr.ldb+jq:])
		clear(row[cols:])
	}
}

// packColumns packs one panel of b stored n×k: each panel column is a piece
// of a row of b.
func (pr *product) packColumns(panel []float32, nr, cols, jq, p0, kb int) {
	full := cols / 8 * 8
	if kb8 := kb / 8; kb8 > 0 {
		for j := 0; j < full; j += 8 {
			transpose8x8AVX(&panel[j], uintptr(nr)*4, &pr.b[(jq+j)*pr.ldb+p0], uintptr(pr.ldb)*4, kb8)
		}
	}
	for j := range nr {
		switch {
		case j >= cols:
			for p := range kb {
				panel[p*nr+j] = 0
			}
		case j >= full:
			src := pr.b[(jq+j)*pr.ldb+p0 : (jq+j)*pr.ldb+p0+kb]
			for p, v := range src {
				panel[p*nr+j] = v
			}
		default:
			// The assembly did all but the last kb%8 steps.
			src := pr.b[(jq+j)*pr.ldb+p0 : (jq+j)*pr.ldb+p0+kb]
			for p := kb / 8 * 8; p < kb; p++ {
				panel[p*nr+j] = src[p]
			}
		}
	}
}
