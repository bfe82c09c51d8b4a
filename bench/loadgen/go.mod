module marketing/bench/loadgen

go 1.21
