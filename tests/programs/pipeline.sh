# A sh pipeline: a loop producing 1, 2, 3 ... every 100 ms, piped into a
# loop that appends each number to the file $1. Run with busybox sh.
i=0
while :; do
	i=$((i + 1))
	echo "$i"
	sleep 0.1
done | while read -r n; do
	echo "$n" >> "$1"
done
