package model_test

import (
	"math/rand"

	"ctseg/model"
)

// randomVolume is a one-channel volume of standard normal values, reproducible from seed.
func randomVolume(size [3]int, seed int64) *model.Tensor {
	rng := rand.New(rand.NewSource(seed))
	vol := model.NewTensor(1, size[0], size[1], size[2])
	for i := range vol.Data {
		vol.Data[i] = float32(rng.NormFloat64())
	}
	return vol
}
