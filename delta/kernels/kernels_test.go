package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// shape is one matrix product to test: dimensions, and how much wider than
// needed each row stride is (0 for packed rows).
type shape struct {
	m, n, k          int
	padC, padA, padB int
}

// testShapes covers the empty and degenerate cases, sizes just around the
// micro-kernel tiles (6, 8, 12, 16, 32, 48), k around the cache blocks, the
// decode-time matvec, strided views, and shapes of the model itself.
var testShapes = []shape{
	{m: 0, n: 5, k: 3}, {m: 5, n: 0, k: 3}, {m: 3, n: 4, k: 0},
	{m: 1, n: 1, k: 1}, {m: 1, n: 7, k: 5}, {m: 7, n: 1, k: 5}, {m: 2, n: 3, k: 1},
	{m: 1, n: 300, k: 288}, {m: 3, n: 100, k: 33},
	// matrix-vector products four rows at a time, with ragged k and n
	{m: 1, n: 9, k: 20}, {m: 2, n: 13, k: 172}, {m: 1, n: 8, k: 8}, {m: 3, n: 4, k: 16},
	{m: 5, n: 15, k: 7}, {m: 6, n: 16, k: 8}, {m: 7, n: 17, k: 9},
	{m: 11, n: 31, k: 17}, {m: 12, n: 32, k: 64}, {m: 13, n: 33, k: 65},
	{m: 23, n: 47, k: 100}, {m: 24, n: 48, k: 129}, {m: 25, n: 49, k: 257},
	{m: 37, n: 95, k: 321}, {m: 50, n: 97, k: 700}, {m: 64, n: 64, k: 1000},
	{m: 97, n: 193, k: 41}, {m: 130, n: 20, k: 300},
	{m: 9, n: 18, k: 10, padC: 3, padA: 5, padB: 1},
	{m: 31, n: 50, k: 48, padC: 240, padA: 240, padB: 240},
	{m: 1, n: 40, k: 48, padC: 7, padA: 240, padB: 240},
	{m: 64, n: 288, k: 288}, {m: 40, n: 768, k: 288}, {m: 40, n: 288, k: 768},
	// Large enough to run in parallel, cut by columns: a matvec, and a
	// product whose panels of b divide evenly between threads.
	{m: 1, n: 1000, k: 300}, {m: 24, n: 800, k: 100},
}

// operands are the stored sizes of a product's matrices.
func (s shape) operands(l layout) (aRows, aCols, bRows, bCols int) {
	switch l {
	case nt:
		return s.m, s.k, s.n, s.k
	case nn:
		return s.m, s.k, s.k, s.n
	default:
		return s.k, s.m, s.k, s.n
	}
}

// sentinel fills the gaps between rows of strided matrices; a kernel that
// writes outside its view turns it into something else.
const sentinel = float32(-12345)

func randMatrix(r *rand.Rand, rows, cols, ld int) []float32 {
	x := make([]float32, max(rows*ld, 0))
	for i := range x {
		x[i] = sentinel
	}
	for i := range rows {
		for j := range cols {
			x[i*ld+j] = 2*r.Float32() - 1
		}
	}
	return x
}

// reference computes the product in float64 and returns, for every element
// of c, the result and a bound on float32 rounding error for it.
func reference(l layout, c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int, accumulate bool) (want, tol []float64) {
	want = make([]float64, m*n)
	tol = make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, abs float64
			if accumulate {
				s, abs = float64(c[i*ldc+j]), math.Abs(float64(c[i*ldc+j]))
			}
			for p := range k {
				var x, y float64
				switch l {
				case nt:
					x, y = float64(a[i*lda+p]), float64(b[j*ldb+p])
				case nn:
					x, y = float64(a[i*lda+p]), float64(b[p*ldb+j])
				case tn:
					x, y = float64(a[p*lda+i]), float64(b[p*ldb+j])
				}
				s += x * y
				abs += math.Abs(x * y)
			}
			want[i*n+j] = s
			// float32 summation of k terms in any order is within
			// about k·eps·Σ|terms|; 1e-5 is generous for k ≤ 1000
			// and still far below the error of a wrong index.
			tol[i*n+j] = 1e-5*abs + 1e-6
		}
	}
	return want, tol
}

// checkProduct fills the operands of one product with random numbers, has
// compute compute it, and compares the result with the float64 reference.
func checkProduct(t *testing.T, l layout, s shape, accumulate bool, compute func(pr *product)) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(s.m*1000003+s.n*1009+s.k), uint64(l)))
	aRows, aCols, bRows, bCols := s.operands(l)
	lda, ldb, ldc := aCols+s.padA, bCols+s.padB, s.n+s.padC
	a := randMatrix(r, aRows, aCols, lda)
	b := randMatrix(r, bRows, bCols, ldb)
	c := randMatrix(r, s.m, s.n, ldc)
	want, tol := reference(l, c, ldc, a, lda, b, ldb, s.m, s.n, s.k, accumulate)
	compute(&product{l: l, c: c, a: a, b: b, ldc: ldc, lda: lda, ldb: ldb, m: s.m, n: s.n, k: s.k, accumulate: accumulate})
	bad := 0
	for i := range s.m {
		for j := range ldc {
			got := c[i*ldc+j]
			if j >= s.n {
				if got != sentinel && bad < 5 {
					t.Errorf("%v %+v: c[%d] (padding after row %d) = %v, was written", l, s, i*ldc+j, i, got)
					bad++
				}
				continue
			}
			w, e := want[i*s.n+j], tol[i*s.n+j]
			if math.Abs(float64(got)-w) > e && bad < 5 {
				t.Errorf("%v %+v accumulate=%v: c[%d,%d] = %v, want %v ± %.2g", l, s, accumulate, i, j, got, w, e)
				bad++
			}
		}
	}
}

func TestMatMul(t *testing.T) {
	pools := []struct {
		name string
		pool *Pool
	}{{"nil", nil}, {"1", NewPool(1)}, {"2", NewPool(2)}, {"3", NewPool(3)}}
	for _, p := range pools {
		defer p.pool.Close()
	}
	for _, l := range []layout{nt, nn, tn} {
		for _, p := range pools {
			t.Run(fmt.Sprintf("%v/pool=%s", l, p.name), func(t *testing.T) {
				matMul := func(pr *product) {
					p.pool.matMul(pr.l, pr.c, pr.ldc, pr.a, pr.lda, pr.b, pr.ldb, pr.m, pr.n, pr.k, pr.accumulate)
				}
				for _, s := range testShapes {
					checkProduct(t, l, s, false, matMul)
					checkProduct(t, l, s, true, matMul)
				}
			})
		}
	}
}

func generic(pr *product) { pr.computeByRows(dotGeneric, axpyGeneric) }

// nonEmpty drops the shapes with a zero dimension, which the API handles
// before any kernel is called.
func nonEmpty(shapes []shape) []shape {
	var out []shape
	for _, s := range shapes {
		if s.m > 0 && s.n > 0 && s.k > 0 {
			out = append(out, s)
		}
	}
	return out
}

// TestMatMulGeneric checks the pure-Go twin directly, since on machines
// with assembly kernels the API never reaches it for large shapes.
func TestMatMulGeneric(t *testing.T) {
	for _, l := range []layout{nt, nn, tn} {
		for _, s := range nonEmpty(testShapes) {
			checkProduct(t, l, s, false, generic)
			checkProduct(t, l, s, true, generic)
		}
	}
}

func TestMatMulPacked(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	r := rand.New(rand.NewPCG(1, 2))
	const m, n, k = 10, 20, 30
	a := randMatrix(r, m, k, k)
	b := randMatrix(r, n, k, k)
	c := make([]float32, m*n)
	p.MatMulNT(c, a, b, m, n, k, false)
	want, tol := reference(nt, c, n, a, k, b, k, m, n, k, false)
	for i := range c {
		if math.Abs(float64(c[i])-want[i]) > tol[i] {
			t.Fatalf("MatMulNT: c[%d] = %v, want %v", i, c[i], want[i])
		}
	}
	// NN and TN through the unstrided API: bᵀ of the NT case as k×n.
	bt := make([]float32, k*n)
	for j := range n {
		for q := range k {
			bt[q*n+j] = b[j*k+q]
		}
	}
	c2 := make([]float32, m*n)
	p.MatMulNN(c2, a, bt, m, n, k, false)
	at := make([]float32, k*m)
	for i := range m {
		for q := range k {
			at[q*m+i] = a[i*k+q]
		}
	}
	c3 := make([]float32, m*n)
	p.MatMulTN(c3, at, bt, m, n, k, false)
	for i := range c {
		if math.Abs(float64(c2[i])-want[i]) > tol[i] || math.Abs(float64(c3[i])-want[i]) > tol[i] {
			t.Fatalf("c[%d]: NT %v, NN %v, TN %v", i, c[i], c2[i], c3[i])
		}
	}
}

func TestMatMulPanicsOnShortSlices(t *testing.T) {
	ok := make([]float32, 6)
	cases := []struct {
		name string
		call func()
		want string
	}{
		{"short c", func() { (*Pool)(nil).MatMulNT(ok[:5], ok, ok, 2, 3, 2, false) }, "c is 2×3"},
		{"short a", func() { (*Pool)(nil).MatMulNN(ok, ok[:3], ok, 2, 3, 2, false) }, "a is 2×2"},
		{"short b", func() { (*Pool)(nil).MatMulTN(ok, ok, ok[:5], 2, 3, 2, false) }, "b is 2×3"},
		{"bad stride", func() { (*Pool)(nil).MatMulNTStrided(ok, 2, ok, 2, ok, 2, 2, 3, 2, false) }, "row stride 2"},
		{"negative", func() { (*Pool)(nil).MatMulNT(ok, ok, ok, -1, 3, 2, false) }, "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.Contains(msg, tc.want) {
					t.Errorf("panic %q, want one mentioning %q", msg, tc.want)
				}
			}()
			tc.call()
		})
	}
}

func TestFor(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		p := NewPool(threads)
		if p.Threads() != threads {
			t.Errorf("NewPool(%d).Threads() = %d", threads, p.Threads())
		}
		for _, n := range []int{0, 1, 2, 3, 7, 100} {
			hits := make([]atomic.Int32, n)
			var calls atomic.Int32
			p.For(n, func(lo, hi int) {
				calls.Add(1)
				if lo >= hi {
					t.Errorf("threads=%d n=%d: empty chunk [%d,%d)", threads, n, lo, hi)
				}
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			})
			for i := range hits {
				if h := hits[i].Load(); h != 1 {
					t.Errorf("threads=%d n=%d: index %d visited %d times", threads, n, i, h)
				}
			}
			if c := int(calls.Load()); c > threads*chunksPerThread || (n > 0 && c < min(n, threads)) {
				t.Errorf("threads=%d n=%d: %d chunks", threads, n, c)
			}
		}
		p.Close()
	}
	if got := (*Pool)(nil).Threads(); got != 1 {
		t.Errorf("nil pool Threads() = %d, want 1", got)
	}
}

// TestForWithoutWorkers checks that a call never waits for a worker that
// has not claimed any work (one descheduled by the OS, say): with the
// worker not yet started, the caller runs every chunk itself. Started
// late, the worker finds the calls it missed gone and takes part in the
// next ones.
func TestForWithoutWorkers(t *testing.T) {
	p := newPool(2)
	defer p.Close()
	r := rand.New(rand.NewPCG(5, 6))
	const m, n, k = 3, 900, 300 // cut by columns into chunks
	a, b := randMatrix(r, m, k, k), randMatrix(r, n, k, k)
	want, tol := reference(nt, nil, n, a, k, b, k, m, n, k, false)
	check := func(when string) {
		t.Helper()
		c := make([]float32, m*n)
		p.MatMulNT(c, a, b, m, n, k, false)
		for i := range c {
			if math.Abs(float64(c[i])-want[i]) > tol[i] {
				t.Fatalf("%s: c[%d] = %v, want %v", when, i, c[i], want[i])
			}
		}
		hits := make([]atomic.Int32, 100)
		p.For(len(hits), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				hits[i].Add(1)
			}
		})
		for i := range hits {
			if h := hits[i].Load(); h != 1 {
				t.Fatalf("%s: index %d visited %d times", when, i, h)
			}
		}
	}
	check("no worker running")
	go p.work(1, p.workers[0])
	for i := range 20 {
		check(fmt.Sprintf("call %d with the worker", i))
	}
}

// TestNested checks that kernels and For called from inside a For callback
// run (inline) instead of deadlocking on the busy pool, and give the same
// answers.
func TestNested(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	r := rand.New(rand.NewPCG(3, 4))
	const heads, m, n, k = 4, 20, 30, 40
	a := randMatrix(r, heads*m, k, k)
	b := randMatrix(r, heads*n, k, k)
	c := make([]float32, heads*m*n)
	p.For(heads, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			p.MatMulNT(c[h*m*n:], a[h*m*k:], b[h*n*k:], m, n, k, false)
			p.For(1, func(int, int) {})
		}
	})
	for h := range heads {
		want, tol := reference(nt, nil, n, a[h*m*k:], k, b[h*n*k:], k, m, n, k, false)
		for i := range m * n {
			if got := c[h*m*n+i]; math.Abs(float64(got)-want[i]) > tol[i] {
				t.Fatalf("head %d: c[%d] = %v, want %v", h, i, got, want[i])
			}
		}
	}
}

// TestConcurrentCallers checks that goroutines sharing a pool get right
// answers: whoever finds the pool busy computes on its own goroutine.
func TestConcurrentCallers(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	r := rand.New(rand.NewPCG(9, 10))
	const m, n, k = 50, 70, 90
	a, b := randMatrix(r, m, k, k), randMatrix(r, n, k, k)
	want, tol := reference(nt, nil, n, a, k, b, k, m, n, k, false)
	errs := make(chan string, 4)
	for range 4 {
		go func() {
			c := make([]float32, m*n)
			for range 50 {
				p.MatMulNT(c, a, b, m, n, k, false)
				for i := range c {
					if math.Abs(float64(c[i])-want[i]) > tol[i] {
						errs <- fmt.Sprintf("c[%d] = %v, want %v", i, c[i], want[i])
						return
					}
				}
			}
			errs <- ""
		}()
	}
	for range 4 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	const m, n, k = 64, 96, 80
	a, b, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
	fn := func(lo, hi int) {}
	for _, pool := range []*Pool{nil, p} {
		allocs := testing.AllocsPerRun(20, func() {
			pool.MatMulNT(c, a, b, m, n, k, false)
			pool.MatMulNN(c, a, b, m, n, k, true)
			pool.MatMulTN(c, a, b, m, n, k, true)
			pool.MatMulNT(c[:n], a[:k], b, 1, n, k, false)
			pool.For(10, fn)
		})
		if allocs != 0 {
			t.Errorf("pool with %d threads: %v allocations per call", pool.Threads(), allocs)
		}
	}
}

func TestVectors(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := range 80 {
		// Offsets make the slices start off any vector alignment.
		for _, off := range []int{0, 1, 3} {
			x := randMatrix(r, 1, n+off, n+off)[off:]
			y := randMatrix(r, 1, n+off, n+off)[off:]

			var want, abs float64
			for i := range x {
				want += float64(x[i]) * float64(y[i])
				abs += math.Abs(float64(x[i]) * float64(y[i]))
			}
			if got := Dot(x, y); math.Abs(float64(got)-want) > 1e-6*abs+1e-7 {
				t.Errorf("Dot n=%d off=%d: %v, want %v", n, off, got, want)
			}

			y0 := append([]float32(nil), y...)
			Axpy(0.5, x, y)
			for i := range y {
				if w := y0[i] + 0.5*x[i]; math.Abs(float64(y[i]-w)) > 1e-6 {
					t.Fatalf("Axpy n=%d off=%d: y[%d] = %v, want %v", n, off, i, y[i], w)
				}
			}

			x0 := append([]float32(nil), x...)
			Scale(-3, x)
			for i := range x {
				if x[i] != -3*x0[i] {
					t.Fatalf("Scale n=%d off=%d: x[%d] = %v, want %v", n, off, i, x[i], -3*x0[i])
				}
			}
		}
	}
}

func TestVectorsPanicOnLengthMismatch(t *testing.T) {
	for name, call := range map[string]func(){
		"Dot":  func() { Dot(make([]float32, 3), make([]float32, 4)) },
		"Axpy": func() { Axpy(1, make([]float32, 4), make([]float32, 3)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with different lengths did not panic", name)
				}
			}()
			call()
		}()
	}
}

func TestExpShifted(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	impls := map[string]func([]float32, float32) float32{"ExpShifted": ExpShifted, "generic": expShiftedGeneric}
	for name, expShifted := range impls {
		for n := range 70 {
			x := make([]float32, n)
			for i := range x {
				// Mostly the range a softmax sees, with some beyond
				// the clamps at −87 and 88.
				x[i] = 40*r.Float32() - 30
				if i%11 == 3 {
					x[i] = 400*r.Float32() - 200
				}
			}
			const shift = 7.5
			want := make([]float64, n)
			var wantSum float64
			for i, v := range x {
				// The float32 subtraction rounds, so e^ can only be
				// exact for the rounded difference.
				want[i] = math.Exp(min(max(float64(v-shift), -87), 88))
				wantSum += want[i]
			}
			sum := expShifted(x, shift)
			for i, got := range x {
				// Cephes' expf is within about 2 ulp.
				if math.Abs(float64(got)-want[i]) > 3e-7*want[i] {
					t.Errorf("%s n=%d: e^x[%d] = %v, want %v", name, n, i, got, want[i])
				}
			}
			if wantSum < math.MaxFloat32 && math.Abs(float64(sum)-wantSum) > 1e-6*wantSum {
				t.Errorf("%s n=%d: sum %v, want %v", name, n, sum, wantSum)
			}
		}
	}
}

func TestMax(t *testing.T) {
	if got := Max(nil); !math.IsInf(float64(got), -1) {
		t.Errorf("Max(nil) = %v, want -Inf", got)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for n := 1; n < 100; n++ {
		// All negative, so that a maximum started at 0 would show; the
		// largest element moves through every position.
		x := make([]float32, n)
		for i := range x {
			x[i] = -1 - r.Float32()
		}
		for at := range n {
			saved := x[at]
			x[at] = -0.5
			if got := Max(x); got != -0.5 {
				t.Fatalf("n=%d, largest at %d: Max = %v, want -0.5", n, at, got)
			}
			x[at] = saved
		}
	}
}

func TestSigmoid(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	impls := map[string]func(dst, x []float32){"Sigmoid": Sigmoid, "generic": sigmoidGeneric}
	for name, sigmoid := range impls {
		for n := range 40 {
			x := make([]float32, n)
			for i := range x {
				x[i] = 30*r.Float32() - 15
				if i%7 == 2 {
					x[i] = 300*r.Float32() - 150
				}
			}
			want := make([]float64, n)
			for i, v := range x {
				want[i] = 1 / (1 + math.Exp(min(max(-float64(v), -87), 88)))
			}
			// In place, as the model uses it.
			sigmoid(x, x)
			for i, got := range x {
				if math.Abs(float64(got)-want[i]) > 3e-7*want[i] {
					t.Errorf("%s n=%d: σ[%d] = %v, want %v", name, n, i, got, want[i])
				}
			}
		}
	}
}

func TestAdamW(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	s := AdamWStep{GradScale: 0.5, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, StepSize: 2e-4 / (1 - 0.9*0.9), Bc2Sqrt: float32(math.Sqrt(1 - 0.999*0.999)), Decay: 1 - 2e-4*0.1}
	for n := range 40 {
		vec := func(scale float32) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = scale * (2*r.Float32() - 1)
			}
			return x
		}
		p, g, m, v := vec(1), vec(0.01), vec(0.001), vec(1e-6)
		for i := range v {
			v[i] = float32(math.Abs(float64(v[i])))
		}
		p2, g2, m2, v2 := slices.Clone(p), slices.Clone(g), slices.Clone(m), slices.Clone(v)
		p0, g0, m0, v0 := slices.Clone(p), slices.Clone(g), slices.Clone(m), slices.Clone(v)
		AdamW(p, g, m, v, s)
		adamWGeneric(p2, g2, m2, v2, &s)
		for i := range n {
			// The assembly does the generic code's operations in its
			// order, so they agree exactly.
			if p[i] != p2[i] || m[i] != m2[i] || v[i] != v2[i] || g[i] != 0 || g2[i] != 0 {
				t.Fatalf("n=%d i=%d: AdamW gives p %v m %v v %v g %v, generic p %v m %v v %v g %v", n, i, p[i], m[i], v[i], g[i], p2[i], m2[i], v2[i], g2[i])
			}
			// And both are the update as written, up to float32 rounding.
			gi := float64(g0[i]) * float64(s.GradScale)
			wm := float64(s.Beta1)*float64(m0[i]) + (1-float64(s.Beta1))*gi
			wv := float64(s.Beta2)*float64(v0[i]) + (1-float64(s.Beta2))*gi*gi
			wp := float64(p0[i])*float64(s.Decay) - float64(s.StepSize)*wm/(math.Sqrt(wv)/float64(s.Bc2Sqrt)+float64(s.Eps))
			// Tolerances relative to the terms, which may cancel.
			mScale := math.Abs(float64(s.Beta1)*float64(m0[i])) + math.Abs((1-float64(s.Beta1))*gi)
			pScale := math.Abs(float64(p0[i])) + math.Abs(float64(p0[i])-wp)
			if math.Abs(float64(p[i])-wp) > 1e-6*pScale || math.Abs(float64(m[i])-wm) > 1e-6*mScale {
				t.Errorf("n=%d i=%d: p %v m %v, want %v %v", n, i, p[i], m[i], wp, wm)
			}
		}
	}
}

// TestSplitUsesAllThreads checks that the model's products, decoding's
// matrix-vector products included, are cut into enough chunks for two
// threads.
func TestSplitUsesAllThreads(t *testing.T) {
	for _, s := range []struct{ m, n, k int }{
		{1, 288, 288}, {1, 768, 288}, {1, 32000, 288}, {1024, 288, 288}, {1024, 768, 288}, {1024, 32000, 288}, {32000, 288, 1024}, {1024, 1, 288},
	} {
		for _, l := range []layout{nt, nn, tn} {
			pr := product{l: l, m: s.m, n: s.n, k: s.k}
			sp := pr.split(2)
			if sp.units < 2 {
				t.Errorf("%v %d×%d×%d: split into %d chunks (rows=%v, grain %d)", l, s.m, s.n, s.k, sp.units, sp.rows, sp.grain)
			}
		}
	}
}
