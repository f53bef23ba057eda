package features

import (
	"fmt"

	"github.com/hackarena/hackarena/sdk"
)

// MNISTImages checks a batch of [n, 28, 28] uint8 images and returns
// their pixels as they are: the networks scale them (a Rescaling layer).
func MNISTImages(b sdk.Batch) ([]byte, error) {
	if b.Images == nil || len(b.Images.Shape) != 3 || b.Images.Shape[1] != 28 || b.Images.Shape[2] != 28 || b.Images.DType != sdk.Uint8 {
		return nil, fmt.Errorf("want uint8 images shaped [n, 28, 28]")
	}
	return b.Images.Data, nil
}
