package format_test

import (
	"fmt"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Verifying blocks as a range read does, per block size: the cost of
// checking what a GET brought (one 4 KiB read's block, and a whole 4 MiB
// extent).
func BenchmarkVerifyBlocks(b *testing.B) {
	data := make([]byte, format.DefaultExtentSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	obj := format.EncodeExtent(data)
	for _, shift := range []uint8{0, 12, 16, 17, 18} {
		ref := format.NewExtentRef(0, 1, data, shift)
		b.Run(fmt.Sprintf("whole-4MiB/shift-%d", shift), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				if _, err := format.DecodeExtent(obj, ref); err != nil {
					b.Fatal(err)
				}
			}
		})
		if shift == 0 {
			continue
		}
		b.Run(fmt.Sprintf("one-block/shift-%d", shift), func(b *testing.B) {
			first, last, off, n := ref.BlockSpan(1<<20, 1<<20+4096)
			b.SetBytes(n)
			for i := 0; i < b.N; i++ {
				if _, err := format.DecodeBlocks(getRange(obj, off, n), ref, first, last); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
