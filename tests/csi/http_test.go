package csi_test

import (
	"io"
	"net/http"
	"time"
)

type netHTTP struct{}

func (netHTTP) get(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
