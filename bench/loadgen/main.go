// loadgen: an HTTP load generator for the benchmarks (standard library only).
//
//	loadgen -url URL [-url URL ...] -rate 500 -duration 10s     open loop: a fixed request rate, latency per request
//	loadgen -url URL -connections 32 -duration 10s              closed loop: as many requests as the server takes
//
// Prints one JSON object: requests, errors, seconds, rps, and latency percentiles in milliseconds.
// Latency is measured from the request's scheduled time (open loop), so a stalled server cannot hide queueing.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type urls []string

func (u *urls) String() string     { return strings.Join(*u, ",") }
func (u *urls) Set(v string) error { *u = append(*u, v); return nil }

func main() {
	var targets urls
	flag.Var(&targets, "url", "URL to GET (repeat to rotate over several)")
	rate := flag.Float64("rate", 0, "requests per second (open loop); 0 = closed loop")
	connections := flag.Int("connections", 16, "concurrent connections (closed loop) / max in flight (open loop)")
	duration := flag.Duration("duration", 10*time.Second, "how long")
	header := flag.String("header", "", "one extra header, 'Name: value'")
	flag.Parse()
	if len(targets) == 0 {
		fmt.Fprintln(os.Stderr, "need -url")
		os.Exit(2)
	}
	transport := &http.Transport{MaxIdleConns: *connections * 2, MaxIdleConnsPerHost: *connections * 2, MaxConnsPerHost: *connections}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	var name, value string
	if *header != "" {
		parts := strings.SplitN(*header, ":", 2)
		name, value = strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1])
	}
	var mu sync.Mutex
	latencies := make([]float64, 0, 1<<16)
	errors := 0
	do := func(i int, scheduled time.Time) {
		req, _ := http.NewRequest("GET", targets[i%len(targets)], nil)
		if name != "" {
			req.Header.Set(name, value)
		}
		resp, err := client.Do(req)
		ok := err == nil && resp.StatusCode < 400
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		elapsed := float64(time.Since(scheduled).Microseconds()) / 1000
		mu.Lock()
		if ok {
			latencies = append(latencies, elapsed)
		} else {
			errors++
		}
		mu.Unlock()
	}
	start := time.Now()
	deadline := start.Add(*duration)
	var wg sync.WaitGroup
	if *rate > 0 {
		interval := time.Duration(float64(time.Second) / *rate)
		slots := make(chan struct{}, *connections*64)
		for i := 0; ; i++ {
			scheduled := start.Add(time.Duration(i) * interval)
			if scheduled.After(deadline) {
				break
			}
			if d := time.Until(scheduled); d > 0 {
				time.Sleep(d)
			}
			slots <- struct{}{}
			wg.Add(1)
			go func(i int, scheduled time.Time) {
				defer wg.Done()
				do(i, scheduled)
				<-slots
			}(i, scheduled)
		}
	} else {
		for c := 0; c < *connections; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for i := c; time.Now().Before(deadline); i += *connections {
					do(i, time.Now())
				}
			}(c)
		}
	}
	wg.Wait()
	seconds := time.Since(start).Seconds()
	sort.Float64s(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(p*float64(len(latencies)-1))]
	}
	out := map[string]float64{
		"requests": float64(len(latencies)), "errors": float64(errors), "seconds": seconds,
		"rps": float64(len(latencies)) / seconds, "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
		"max_ms": pct(1.0),
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
