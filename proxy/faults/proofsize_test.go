package faults

import "time"

// proofSizes are the sizes of every proof; sizes_test.go holds the short
// ones, sizes_long_test.go (build tag faults) the full ones.
type proofSizes struct {
	long     bool // the full suite
	crash    crashSize
	graceful gracefulSize
	outage   outageSize
	storm    stormSize
}

type crashSize struct {
	users  int
	rate   float64       // events per second over all users
	kills  int           // SIGKILLs, each followed by a start
	maxUp  time.Duration // a kill comes at a random moment up to this long after the life's first 200
	within time.Duration // bound of the final catch-up
}

type gracefulSize struct {
	users    int
	rate     float64
	restarts int           // SIGTERM + start cycles
	up       time.Duration // each life's time under load after its first 200
	within   time.Duration
}

type outageSize struct {
	users     int
	rate      float64
	handovers int           // threads that ask for a human during each outage
	failing   time.Duration // the bot answers 500 this long
	refusing  time.Duration // then, after a pause, refuses connections this long
	between   time.Duration // load with a healthy bot before, between and after
	within    time.Duration
}

type stormSize struct {
	users      int           // threads; each asks for a human once
	before     int           // messages each sends before asking
	rate       float64       // events per second over all users
	failure    float64       // share of Graph calls failed transiently
	burst      time.Duration // each rate-limit burst (613) lasts this long
	burstEvery time.Duration // a burst starts this often while passes are missing; 0: one burst, at the start
	quiet      time.Duration // no Graph call for this long ends the storm
	within     time.Duration
}
