//go:build !linux

package testenv

import "os/exec"

// setPdeathsig does nothing outside Linux: only Main stops the server there.
func setPdeathsig(*exec.Cmd) {}
