package driver

import (
	"flag"
	"io"
	"log/slog"
	"strconv"

	"k8s.io/klog/v2"
)

// SetupLogging routes klog into log/slog.
//
// Why both: the driver logs through klog (klog.InfoS, klog.V(n)) because
// that is what the CSI ecosystem does: the sidecars, csi-test and
// operators' habits (-v verbosity) all speak it. The rest of s3gfs, and in
// particular the `s3gfs mount` processes the node plugin starts, log with
// log/slog's text handler. klog.SetSlogLogger makes klog write through the
// same slog text handler, so a node's plugin and mount logs have one
// format (time=... level=... msg=... key=value) that one log pipeline
// parses, while klog's verbosity still decides what is logged: V(n)
// becomes slog level -n, and the handler lets every level through.
func SetupLogging(w io.Writer, verbosity int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	fs.Set("v", strconv.Itoa(verbosity))
	fs.Set("logtostderr", "false")
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.Level(-100)})
	klog.SetSlogLogger(slog.New(h))
}
