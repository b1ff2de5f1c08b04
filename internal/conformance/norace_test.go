//go:build !race

package conformance_test

// raceEnabled reports that the test binary was built with -race.
const raceEnabled = false
