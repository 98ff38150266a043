package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A Pool runs kernels on a fixed set of goroutines: the calling goroutine
// plus Threads()-1 workers started by NewPool. Steady-state calls do not
// allocate.
//
// A parallel call cuts its work into a few chunks per thread and every
// thread, the caller included, claims chunks from a shared counter until
// none are left; the caller then waits only for chunks a worker has
// already claimed. On a machine shared with other work a worker is often
// descheduled for milliseconds: with a fixed share per thread (as before,
// and as llama.cpp's barriers do) every call waited for it, so two threads
// decoded slower than one; now the caller does the work the worker has not
// claimed, and a call costs at most one chunk more than running alone.
//
// Between calls a worker busy-waits for the next one for up to spinWait
// before it parks, and so does a caller waiting for a worker's last chunk:
// decoding one token makes a few dozen parallel calls of some µs each, and
// waking a parked goroutine costs about as much. On a quiet machine that
// took two threads from 218-248 to 300-355 tokens/s decoding stories15M.
// But on a machine shared with other work a spinner takes the CPU from the
// very thread it waits for (Linux shares CPU between process groups, not
// threads): at load 10 two threads decoded up to 40% slower with a spin.
// So a waiter whose spins keep going unanswered stops spinning for a while,
// and starts again once a parked wait was answered within spinWait; see
// receive. Pools with more threads than GOMAXPROCS never spin: a spinner
// would hold a processor that the goroutine it waits for needs.
//
// A Pool runs one parallel call at a time. A call that finds the pool busy
// (another goroutine's call, or a kernel called from inside a For callback)
// runs on its own goroutine instead of waiting, so nesting cannot deadlock.
// A nil *Pool runs everything on the calling goroutine.
type Pool struct {
	threads int
	mu      sync.Mutex // held for the duration of one parallel call
	workers []*mailbox

	// next is the current call's generation (high 32 bits) and the index
	// of its next unclaimed chunk (low 32 bits); finished counts its
	// completed chunks. A worker that picks up a call late finds a newer
	// generation and leaves, without touching the old call's memory.
	next     atomic.Uint64
	finished atomic.Int32
	gen      uint32    // generation of the current call, owned by the caller
	idle     chan bool // workers report here that they have finished a chunk
	idleSpin spinner   // the caller's waits on idle

	// scratch[i] is thread i's memory for packed panels of b; thread 0 is
	// the caller.
	scratch [][]float32
}

// A task is one parallel call as a worker sees it: a For callback, or
// (with fn nil) a product cut along the split, in chunks of chunk units.
type task struct {
	gen          uint32
	fn           func(lo, hi int)
	pr           product
	split        split
	units, chunk int
}

// A mailbox hands tasks to one worker. The newest task replaces one the
// worker has not yet taken, so a late worker never queues up stale calls.
type mailbox struct {
	mu     sync.Mutex
	task   task
	has    bool
	closed bool
	wake   chan struct{} // a token when task or closed changed
	spin   spinner       // the worker's waits on wake
}

// NewPool starts a pool of threads goroutines in all (the caller counts as
// one); threads <= 0 means runtime.GOMAXPROCS(0). Close stops it.
func NewPool(threads int) *Pool {
	p := newPool(threads)
	for i, mb := range p.workers {
		go p.work(i+1, mb)
	}
	return p
}

// newPool is NewPool without starting the workers, so that tests can start
// them late.
func newPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	never := threads > runtime.GOMAXPROCS(0)
	p := &Pool{
		threads:  threads,
		workers:  make([]*mailbox, threads-1),
		idle:     make(chan bool, threads),
		idleSpin: spinner{never: never},
		scratch:  make([][]float32, threads),
	}
	for i := range p.scratch {
		p.scratch[i] = make([]float32, scratchFloats)
	}
	for i := range p.workers {
		p.workers[i] = &mailbox{wake: make(chan struct{}, 1), spin: spinner{never: never}}
	}
	return p
}

// work is a worker's loop: wait for a task, claim its chunks.
func (p *Pool) work(thread int, mb *mailbox) {
	for {
		receive(&mb.spin, mb.wake)
		mb.mu.Lock()
		t, has, closed := mb.task, mb.has, mb.closed
		mb.task, mb.has = task{}, false // drop the references to the caller's slices
		mb.mu.Unlock()
		if closed {
			return
		}
		if has {
			p.claim(thread, &t)
		}
	}
}

// spinWait bounds a busy-wait: long enough to span the serial steps
// between the parallel calls of one decoded token (norms, RoPE, the
// sampler), short enough that a pool gone idle gives its cores back at once.
const spinWait = 30 * time.Microsecond

// A spinner decides whether one waiter busy-waits before it parks. Some
// spins go unanswered in normal work (a worker waits while the caller
// finishes a long chunk of the classifier); maxFails in a row say that the
// goroutine waited for is not getting a CPU, and the waiter then parks at
// once for the next skipWaits waits, unless one of them is answered within
// spinWait, which says that a spin would have paid.
type spinner struct {
	never       bool // the pool has more threads than GOMAXPROCS
	fails, skip int
}

const maxFails, skipWaits = 8, 64

// receive receives from ch, busy-waiting first as sp decides.
func receive[T any](sp *spinner, ch chan T) T {
	if sp.never {
		return <-ch
	}
	start := time.Now()
	if sp.skip > 0 {
		sp.skip--
		v := <-ch
		if time.Since(start) < spinWait {
			sp.fails, sp.skip = 0, 0
		}
		return v
	}
	// The channel's length is only a hint, read without its lock; the
	// receive that follows is what synchronises.
	for i := 1; len(ch) == 0; i++ {
		if i%256 == 0 && time.Since(start) > spinWait {
			if sp.fails++; sp.fails >= maxFails {
				sp.skip = skipWaits
			}
			return <-ch
		}
	}
	sp.fails = 0
	return <-ch
}

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, mb := range p.workers {
		mb.mu.Lock()
		mb.closed = true
		mb.mu.Unlock()
		select {
		case mb.wake <- struct{}{}:
		default:
		}
	}
	p.workers = nil
	p.threads = 1
}

// Threads reports how many goroutines the pool computes on; 1 for a nil pool.
func (p *Pool) Threads() int {
	if p == nil {
		return 1
	}
	return p.threads
}

// chunksPerThread is how many chunks a parallel call is cut into per
// thread: enough that a thread that gets no CPU for a while leaves little
// behind, few enough that claiming them costs nothing against the work.
const chunksPerThread = 4

// For calls fn(lo, hi) on disjoint chunks covering [0,n), in parallel
// across the pool, and returns when all have finished. Chunks are
// contiguous and of nearly equal size, at most chunksPerThread per thread;
// which thread runs which chunk is not fixed.
func (p *Pool) For(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if p == nil || p.threads == 1 || n == 1 || !p.mu.TryLock() {
		fn(0, n)
		return
	}
	defer p.mu.Unlock()
	p.parallel(task{fn: fn, units: n, chunk: ceilDiv(n, p.threads*chunksPerThread)})
}

// parallel runs t with p.mu held: it posts t to every worker, claims
// chunks itself, and waits until all chunks are done.
func (p *Pool) parallel(t task) {
	p.gen++
	t.gen = p.gen
	chunks := ceilDiv(t.units, t.chunk)
	p.finished.Store(0)
	p.next.Store(uint64(t.gen) << 32)
	for _, mb := range p.workers[:min(len(p.workers), chunks-1)] {
		mb.mu.Lock()
		mb.task, mb.has = t, true
		mb.mu.Unlock()
		select {
		case mb.wake <- struct{}{}:
		default: // a token is already there
		}
	}
	p.claim(0, &t)
	for int(p.finished.Load()) < chunks {
		receive(&p.idleSpin, p.idle)
	}
	// The tokens of chunks finished after the last check are left in idle
	// for a later call's loop to skip; drain them so they do not pile up.
	for len(p.idle) > 0 {
		<-p.idle
	}
}

// claim runs chunks of t on thread until t's chunks are all claimed or a
// newer call has replaced it.
func (p *Pool) claim(thread int, t *task) {
	chunks := uint32(ceilDiv(t.units, t.chunk))
	for {
		v := p.next.Load()
		if uint32(v>>32) != t.gen || uint32(v) >= chunks {
			return
		}
		if !p.next.CompareAndSwap(v, v+1) {
			continue
		}
		i := int(uint32(v))
		lo, hi := i*t.chunk, min((i+1)*t.chunk, t.units)
		if t.fn != nil {
			t.fn(lo, hi)
		} else {
			t.runProduct(p.scratch[thread], lo, hi)
		}
		p.finished.Add(1)
		if thread != 0 {
			select {
			case p.idle <- true:
			default: // the caller will see finished anyway
			}
		}
	}
}

// runProduct computes units [lo, hi) of t's product along its split.
func (t *task) runProduct(scratch []float32, lo, hi int) {
	s := t.split
	if s.rows {
		sub := t.pr.rows(lo*s.grain, min(hi*s.grain, t.pr.m))
		sub.compute(scratch)
	} else {
		sub := t.pr.cols(lo*s.grain, min(hi*s.grain, t.pr.n))
		sub.compute(scratch)
	}
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
	// A strip of rows packs all of b again, so rows go in one chunk per
	// thread; strips of columns pack only their own panels and can be
	// cut finer.
	chunk := ceilDiv(s.units, p.threads)
	if !s.rows {
		chunk = ceilDiv(s.units, p.threads*chunksPerThread)
	}
	p.parallel(task{pr: *pr, split: s, units: s.units, chunk: chunk})
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

// split says how a product is cut into parallel chunks: along the rows or
// the columns of c, in units of grain rows or columns.
type split struct {
	rows  bool
	grain int
	units int
}

// split chooses how to cut pr into parallel chunks for threads goroutines,
// in units of the kernel's tile so that only the last chunk has a ragged
// edge. Strips of columns cost nothing extra, since every thread reads a in
// place, but whole tiles may not divide evenly among the threads; strips of
// rows divide finely, but then every thread packs all of b. split takes the
// cut whose slowest thread has the least to do.
func (pr *product) split(threads int) split {
	work := pr.m * pr.n * pr.k
	if !pr.tiled() {
		// Dot products and axpys load an element of b for every
		// multiply-add, which costs several times a tiled one.
		work *= untiledCost
	}
	if work < minParallelWork {
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

// minParallelWork is the number of multiply-adds below which a parallel
// call costs more than it saves: one costs 0.1-1 µs (BenchmarkFor), and
// 128K multiply-adds of the tiled kernel take about 1.3 µs on one core.
const minParallelWork = 128 * 1024

// untiledCost is what a multiply-add of the untiled path (matrix-vector
// products) costs in those of the tiled one: 8 bytes of b streamed at
// 15-30 GB/s against 100-200 GFLOP/s. The 288×288 products of decoding a
// stories15M token take 10-20 µs and so run in parallel.
const untiledCost = 8

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
