package testenv

import (
	"os/exec"
	"syscall"
)

// setPdeathsig asks Linux to kill the server if the test binary dies
// without running Main's cleanup (a panic, a timeout, SIGKILL).
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
