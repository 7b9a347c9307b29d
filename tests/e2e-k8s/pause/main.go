// Command pause is the e2e cluster's sandbox ("pause") container: it holds a
// pod's namespaces, reaps the zombies it inherits as PID 1, and exits on
// SIGINT or SIGTERM, as Kubernetes' own pause does. Built statically into
// the image registry.k8s.io/pause by tests/e2e-k8s (the real image cannot be
// pulled: this machine has no registry access).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
