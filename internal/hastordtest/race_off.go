//go:build !race

package hastordtest

const raceEnabled = false
