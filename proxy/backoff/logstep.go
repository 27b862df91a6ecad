package backoff

// LogStep reports whether a retry loop should log its attempt'th failure:
// the 1st, 2nd, 4th, 8th and so on. A loop that fails for an hour then
// leaves a dozen lines, not one per attempt, and each line still carries
// the attempt's number, so the gaps say how many went unlogged.
func LogStep(attempt int) bool { return attempt > 0 && attempt&(attempt-1) == 0 }
