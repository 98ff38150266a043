# jobs.sh: the job runner of scripts/reproduce.sh and scripts/idk.sh (sourced, not run).
#
# Each job is a name and a command. Its command is logged to $run/commands.sh (for RESULTS.md)
# and to $run/NAME.cmd, its output to $run/NAME.log and its wall seconds to $run/NAME.seconds.
# A job whose .seconds exists and whose .cmd is this very command finished in an earlier run
# into the same $run and is skipped, so an interrupted run resumes. The inputs' contents are
# not compared: after changing a script or the world, start over (FRESH=1 or another RUN).
#
# Needs: run (the run's folder), job_tag (the prefix of its messages), JOBS (2: bg's limit).

# x NAME CMD...: log the command, run it (unless it finished before), time it.
x() {
	logged "$@"
	run_job "$@"
}

# bg NAME CMD...: x in the background, at most $JOBS at a time; barrier waits for all. The
# command is logged here, before the fork, so that commands.sh lists the jobs in the order
# they start, not in the order their subshells get to run.
bg() {
	while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n || exit 1; done
	logged "$@"
	run_job "$@" &
}

# logged NAME CMD...: append the command to $run/commands.sh.
logged() {
	shift
	printf '%s\n\n' "$(quoted "$@")" >>"$run/commands.sh"
}

quoted() { printf '%q ' "$@" | sed 's/ $//'; }

# run_job NAME CMD...: run it unless it finished before with this very command.
run_job() {
	local name=$1
	shift
	local cmd
	cmd=$(quoted "$@")
	if [ -e "$run/$name.seconds" ] && [ "$(cat "$run/$name.cmd" 2>/dev/null)" = "$cmd" ]; then
		echo "$job_tag: $name (done in an earlier run)" >&2
		return 0
	fi
	rm -f "$run/$name.seconds"
	printf '%s\n' "$cmd" >"$run/$name.cmd"
	echo "$job_tag: $name" >&2
	local t0=$SECONDS
	"$@" >"$run/$name.log" 2>&1 || { echo "$job_tag: $name failed, see $run/$name.log" >&2; tail -n 20 "$run/$name.log" >&2; exit 1; }
	echo "$((SECONDS - t0))" >"$run/$name.seconds"
}

barrier() { while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || exit 1; done; wait || exit 1; }
