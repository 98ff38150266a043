package server

import (
	"context"
	"errors"
	"sync"
)

var (
	errQueueFull      = errors.New("every generation slot and waiting place is taken")
	errShuttingDown   = errors.New("server is shutting down")
	errRequestTimeout = errors.New("request timed out")
)

// gate admits generations: a bounded number run, a bounded number wait, and
// the rest are turned away at once. Both bounds are buffered channels used as
// counting semaphores, so waiting costs one blocked goroutine per request and
// nothing grows with load.
type gate struct {
	admitted  chan struct{} // one token per running or waiting request
	running   chan struct{} // one token per running generation
	closing   chan struct{} // closed when shutdown begins
	closeOnce sync.Once
}

func newGate(concurrency, queueSize int) *gate {
	return &gate{
		admitted: make(chan struct{}, concurrency+queueSize),
		running:  make(chan struct{}, concurrency),
		closing:  make(chan struct{}),
	}
}

// enter waits for a generation slot. It fails at once with errQueueFull when
// every slot and waiting place is taken, with errShuttingDown once close has
// been called, and with ctx's cause if ctx ends first. After a nil error the
// caller must call leave.
func (g *gate) enter(ctx context.Context) error {
	if g.isClosing() {
		return errShuttingDown
	}
	select {
	case g.admitted <- struct{}{}:
	default:
		return errQueueFull
	}
	select {
	case g.running <- struct{}{}:
	case <-ctx.Done():
		<-g.admitted
		return context.Cause(ctx)
	case <-g.closing:
		<-g.admitted
		return errShuttingDown
	}
	// select picks at random among ready cases, so a slot may be won just as
	// shutdown begins; a request that has not started by then is turned away
	// like every other waiting one.
	if g.isClosing() {
		g.leave()
		return errShuttingDown
	}
	return nil
}

// leave gives back the slot taken by a successful enter.
func (g *gate) leave() {
	<-g.running
	<-g.admitted
}

// close turns away waiting and future requests.
func (g *gate) close() {
	g.closeOnce.Do(func() { close(g.closing) })
}

// drain returns once no generation runs. It takes every slot for good, so
// call it only after close, when no generation may start any more.
func (g *gate) drain() {
	for range cap(g.running) {
		g.running <- struct{}{}
	}
}

func (g *gate) isClosing() bool {
	select {
	case <-g.closing:
		return true
	default:
		return false
	}
}
