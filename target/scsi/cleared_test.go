package scsi

import "testing"

// TestCommandsCleared checks SAM-5 "CLEAR TASK SET": the I_T nexus whose
// commands another initiator cleared gets UNIT ATTENTION 2Fh/00h, once.
func TestCommandsCleared(t *testing.T) {
	lu := newTestLU(t)
	n1, n2 := newNexus(t, lu), newNexus(t, lu)
	lu.CommandsCleared(n2)
	expectGood(t, run(t, lu, n1, cdb6(opTestUnitReady), nil))
	expectSense(t, run(t, lu, n2, cdb6(opTestUnitReady), nil), SenseUnitAttention, ascCommandsCleared)
	expectGood(t, run(t, lu, n2, cdb6(opTestUnitReady), nil))
}
