# table.awk prints the ratios in `go test -bench` output (metrics whose unit
# starts with "x-", ends with "-x", or reads "a-vs-b", and flood/idle) as one
# markdown table, each with its target where an issue set one and whether
# the run met it. The targets of the Engine against PyTorch are for the
# OpenBLAS build; pure-Go rows are shown without them. make bench-engine
# and make bench run it on the files they saved:
#   awk -f internal/bench/table.awk label=pure-Go a.txt label=OpenBLAS b.txt
BEGIN {
	target["BenchmarkEngine/infer-10k x-torch"] = 1.00
	target["BenchmarkEngine/train-batch128 x-torch"] = 1.6
	target["BenchmarkEngine/train-batch32 x-torch"] = 1.8
	target["BenchmarkEngine/cnn-infer-10k x-torch"] = 1.2
	target["BenchmarkEngine/cnn-train-6k x-torch"] = 2.0
	target["BenchmarkJudgeOverhead/bwrap x-inprocess"] = 1.3
	target["BenchmarkJudgeOverhead/docker x-inprocess"] = 1.3
	print ""
	print "| build | benchmark | ratio | measured | target | met |"
	print "| --- | --- | --- | ---: | --- | --- |"
}
/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i += 2) {
		unit = $(i + 1)
		if (unit !~ /^x-/ && unit !~ /-x$/ && unit !~ /-vs-/ && unit != "flood/idle") continue
		key = name " " unit
		if (label != "pure-Go" && key in target) {
			printf "| %s | %s | %s | %.3f× | ≤ %.2f× | %s |\n", label, name, unit, $i, target[key], ($i <= target[key] ? "yes" : "no")
		} else {
			printf "| %s | %s | %s | %.3f× | - | |\n", label, name, unit, $i
		}
	}
}
