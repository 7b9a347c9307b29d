package vfs

import "sync"

// workerPool runs background work (deferred creates' decisions, cleanups)
// on goroutines that outlive each job: a goroutine started for each job
// would grow its stack anew through the store client's deep calls every
// time (that stack growth was a tenth of the mount's CPU in a run of
// small files).
type workerPool struct {
	once sync.Once
	jobs chan func() // unbuffered: a send succeeds only with a worker idle
}

// poolWorkers is how many long-lived goroutines a workerPool keeps; when
// all are busy, a job gets a goroutine of its own.
const poolWorkers = 4

// run runs job on an idle worker, or on a goroutine of its own.
func (p *workerPool) run(job func()) {
	p.once.Do(func() {
		p.jobs = make(chan func())
		for range poolWorkers {
			go func() {
				for job := range p.jobs {
					job()
				}
			}()
		}
	})
	select {
	case p.jobs <- job:
	default:
		go job()
	}
}

// stop ends the workers; run may not be called after it.
func (p *workerPool) stop() {
	p.once.Do(func() {}) // never started: nothing to stop
	if p.jobs != nil {
		close(p.jobs)
	}
}
