package backoff

import "testing"

func TestLogStepLogsEachDoubling(t *testing.T) {
	var logged []int
	for a := 0; a <= 100; a++ {
		if LogStep(a) {
			logged = append(logged, a)
		}
	}
	want := []int{1, 2, 4, 8, 16, 32, 64}
	if len(logged) != len(want) {
		t.Fatalf("logged attempts %v; want %v", logged, want)
	}
	for i := range want {
		if logged[i] != want[i] {
			t.Fatalf("logged attempts %v; want %v", logged, want)
		}
	}
}
