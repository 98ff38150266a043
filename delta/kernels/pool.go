package kernels

import (
	"runtime"
	"sync"
)

// A Pool runs kernels on a fixed set of goroutines: the calling goroutine
// plus Threads()-1 workers started by NewPool. A call hands each worker one
// chunk over a channel and waits for all of them, so steady-state calls do
// not allocate.
//
// A Pool runs one parallel call at a time. A call that finds the pool busy
// (another goroutine's call, or a kernel called from inside a For callback)
// runs on its own goroutine instead of waiting, so nesting cannot deadlock.
// A nil *Pool runs everything on the calling goroutine.
type Pool struct {
	threads int
	mu      sync.Mutex // held for the duration of one parallel call
	chunks  []chan chunk
	done    chan struct{}

	// scratch[i] is thread i's memory for packed panels of b; thread 0 is
	// the caller.
	scratch [][]float32

	// The product being computed by the current parallel call. It lives
	// here rather than in a closure so that handing it to the workers does
	// not allocate.
	job      product
	jobSplit split
}

// chunk is the part [lo,hi) of a parallel loop given to one thread: of a
// For loop when fn is set, of the pool's current product otherwise.
type chunk struct {
	fn             func(lo, hi int)
	thread, lo, hi int
}

// NewPool starts a pool of threads goroutines in all (the caller counts as
// one); threads <= 0 means runtime.GOMAXPROCS(0). Close stops it.
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &Pool{
		threads: threads,
		chunks:  make([]chan chunk, threads-1),
		done:    make(chan struct{}, threads-1),
		scratch: make([][]float32, threads),
	}
	for i := range p.scratch {
		p.scratch[i] = make([]float32, scratchFloats)
	}
	for i := range p.chunks {
		p.chunks[i] = make(chan chunk, 1)
		go p.work(p.chunks[i])
	}
	return p
}

func (p *Pool) work(chunks <-chan chunk) {
	for c := range chunks {
		c.run(p)
		p.done <- struct{}{}
	}
}

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.chunks {
		close(c)
	}
	p.chunks = nil
	p.threads = 1
}

// Threads reports how many goroutines the pool computes on; 1 for a nil pool.
func (p *Pool) Threads() int {
	if p == nil {
		return 1
	}
	return p.threads
}

// For calls fn(lo, hi) on disjoint chunks covering [0,n), in parallel
// across the pool, and returns when all have finished. Chunks are
// contiguous and of nearly equal size, at most one per thread.
func (p *Pool) For(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if p == nil || p.threads == 1 || n == 1 || !p.mu.TryLock() {
		fn(0, n)
		return
	}
	defer p.mu.Unlock()
	p.parallel(n, fn)
}

// parallel is For with p.mu held, or with a nil fn the pool's current
// product cut into n units: chunk 0 runs on the caller, the others on the
// workers.
func (p *Pool) parallel(n int, fn func(lo, hi int)) {
	parts := min(p.threads, n)
	for i := 1; i < parts; i++ {
		p.chunks[i-1] <- chunk{fn: fn, thread: i, lo: i * n / parts, hi: (i + 1) * n / parts}
	}
	chunk{fn: fn, thread: 0, lo: 0, hi: n / parts}.run(p)
	for i := 1; i < parts; i++ {
		<-p.done
	}
}

func (c chunk) run(p *Pool) {
	if c.fn != nil {
		c.fn(c.lo, c.hi)
		return
	}
	s, scratch := p.jobSplit, p.scratch[c.thread]
	if s.rows {
		sub := p.job.rows(c.lo*s.grain, min(c.hi*s.grain, p.job.m))
		sub.compute(scratch)
	} else {
		sub := p.job.cols(c.lo*s.grain, min(c.hi*s.grain, p.job.n))
		sub.compute(scratch)
	}
}

// split says how a product is cut into parallel chunks: along the rows or
// the columns of c, in units of grain rows or columns.
type split struct {
	rows  bool
	grain int
	units int
}

// run computes pr, in parallel when the pool is free.
func (p *Pool) run(pr *product) {
	if p == nil || !p.mu.TryLock() {
		pr.computeInline()
		return
	}
	defer p.mu.Unlock()
	s := pr.split(p.threads)
	if p.threads == 1 || s.units < 2 {
		pr.compute(p.scratch[0])
		return
	}
	p.job, p.jobSplit = *pr, s
	p.parallel(s.units, nil)
	p.job = product{} // drop the references to the caller's slices
}

// computeInline computes pr on the calling goroutine with scratch memory
// on its stack, for calls without a free pool. It is a function of its own
// so that only those calls pay for the large frame.
//
//go:noinline
func (pr *product) computeInline() {
	var scratch [inlineScratchFloats]float32
	pr.compute(scratch[:])
}

// split chooses how to cut pr into parallel chunks for threads goroutines,
// in units of the kernel's tile so that only the last chunk has a ragged
// edge. Strips of columns cost nothing extra, since every thread reads a in
// place, but whole tiles may not divide evenly among the threads; strips of
// rows divide finely, but then every thread packs all of b. split takes the
// cut whose slowest thread has the least to do.
func (pr *product) split(threads int) split {
	if pr.m*pr.n*pr.k < minParallelWork {
		return split{}
	}
	g := pr.grain()
	rowUnits, colUnits := ceilDiv(pr.m, g.rows), ceilDiv(pr.n, g.cols)
	// The slowest thread's work, in elements of c, packing included.
	byRows := (min(ceilDiv(rowUnits, threads)*g.rows, pr.m) + g.packRows) * pr.n
	byCols := pr.m*min(ceilDiv(colUnits, threads)*g.cols, pr.n) + g.packRows*pr.n/threads
	if byRows <= byCols {
		return split{rows: true, grain: g.rows, units: rowUnits}
	}
	return split{grain: g.cols, units: colUnits}
}

// A grain is the granularity of a kernel's work on one product: tiles of
// rows×cols, and the cost of packing all of b counted as computing packRows
// more rows of c.
type grain struct {
	rows, cols, packRows int
}

// minParallelWork is the number of multiply-adds below which waking the
// workers costs more than it saves: a parallel call costs about 0.5 µs
// (BenchmarkFor) and more when the workers sleep, and 128K multiply-adds
// take about 1.3 µs on one core.
const minParallelWork = 128 * 1024

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// rows is the sub-product computing rows [lo,hi) of c.
func (pr *product) rows(lo, hi int) product {
	sub := *pr
	sub.m = hi - lo
	sub.c = pr.c[lo*pr.ldc:]
	if pr.l == tn {
		sub.a = pr.a[lo:]
	} else {
		sub.a = pr.a[lo*pr.lda:]
	}
	return sub
}

// cols is the sub-product computing columns [lo,hi) of c.
func (pr *product) cols(lo, hi int) product {
	sub := *pr
	sub.n = hi - lo
	sub.c = pr.c[lo:]
	if pr.l == nt {
		sub.b = pr.b[lo*pr.ldb:]
	} else {
		sub.b = pr.b[lo:]
	}
	return sub
}
