# scripts/lib/cmocka-count.awk — count cmocka test cases in the captured output of test programs.
#
#   awk -f cmocka-count.awk -v name=PROG -v rc=STATUS OUTPUT.log      one program's output
#   awk -f cmocka-count.awk -v ctest=1 [-v failed_list=LastTestsFailed.log] LastTest.log
#                                                 every program of a ctest run, from ctest's log
#
# Prints one line per program, tab-separated: NAME PASSED FAILED SKIPPED NOTE, where FAILED is the
# number of test cases that failed or errored plus 1 for each problem that is not a test case
# (each group setup/teardown failure; output that stops inside a group: crash, abort, timeout;
# no cmocka output at all; a non-zero exit although no test failed). NOTE lists those problems.
#
# cmocka 1.1.x prints per group (stdout: "[====...] Running N test(s).", "N test(s) run.";
# stderr: "[  PASSED  ] N test(s).", "[  SKIPPED ] N test(s), listed below:", "[  FAILED  ] N
# test(s), listed below:" — only if non-zero; "[  FAILED  ] GROUP SETUP|TEARDOWN"). Errored
# tests (a failing per-test setup or teardown) appear in no summary line, hence failed+errored =
# run - passed - skipped. Matches are not anchored: cmocka flushes every line, but another writer's
# unterminated line may precede one; cmocka 2.x's "GROUP: " prefix is accepted too.

function num(s) { # the first number in s
    if (match(s, /[0-9]+/))
        return substr(s, RSTART, RLENGTH) + 0
    return 0
}

function reset() {
    started = 0; finished = 0; run = 0; passed = 0; skipped = 0; fixture = 0; status = ""
}

function note(s) { notes = notes (notes == "" ? "" : "; ") s }

function flush(prog, failed_exit, why,    failed, extra) {
    notes = ""
    extra = 0
    failed = run - passed - skipped
    if (failed < 0) {
        failed = 0
        extra++
        note("cmocka's summary lines do not add up (+1)")
    }
    if (fixture > 0) {
        extra += fixture
        note(fixture " group setup/teardown failure(s) (+" fixture ")")
    }
    if (started == 0) {
        extra++
        note("printed no cmocka results (+1)")
    } else if (started > finished) {
        extra++
        note("output stops inside a test group: crash, abort or timeout (+1)")
    }
    if (failed_exit && failed + extra == 0) {
        extra++
        note(why " although no test failed (+1)")
    }
    printf "%s\t%d\t%d\t%d\t%s\n", prog, passed, failed + extra, skipped, notes
}

BEGIN {
    reset()
    if (ctest && failed_list != "") {
        # "N:name" per failing test; ctest's LastTest.log says "Test Passed." even for a test
        # whose executable could not be found, so this list is the reliable verdict
        while ((getline line < failed_list) > 0) {
            sub(/^[0-9]+:/, "", line)
            ctest_failed[line] = 1
        }
        close(failed_list)
    }
}

# ---- ctest's LastTest.log: one section per test, its output between "Output:" and the end mark
ctest && /^[0-9]+\/[0-9]+ Test: / {
    if (section != "")
        flush(section, status == "failed" || (section in ctest_failed), "ctest reports a failure")
    reset()
    section = $0
    sub(/^[0-9]+\/[0-9]+ Test: /, "", section)
    in_output = 0
    next
}
ctest && section != "" && !in_output && /^Output:$/ { in_output = 1; next }
ctest && in_output && /^<end of output>$/ { in_output = 0; next }
ctest && section != "" && !in_output {
    if ($0 == "Test Passed.") status = "passed"
    else if ($0 == "Test Failed.") status = "failed"
    next
}
ctest && !in_output { next }

# ---- cmocka's lines
/\[==========\] (.*: )?Running [0-9]+ test\(s\)\./ { started++ }
/\[==========\] (.*: )?[0-9]+ test\(s\) run\./ {
    s = $0
    sub(/.*\[==========\] (.*: )?/, "", s)
    run += num(s)
}
/\[  PASSED  \] [0-9]+ test\(s\)\./ {
    s = $0
    sub(/.*\[  PASSED  \] /, "", s)
    passed += num(s)
    finished++ # the last line a group always prints
}
/\[  SKIPPED \] (.*: )?[0-9]+ test\(s\), listed below:/ {
    s = $0
    sub(/.*\[  SKIPPED \] (.*: )?/, "", s)
    skipped += num(s)
}
/\[  FAILED  \] GROUP (SETUP|TEARDOWN)/ { fixture++ }

END {
    if (ctest) {
        if (section != "")
            flush(section, status == "failed" || (section in ctest_failed), "ctest reports a failure")
    } else {
        flush(name == "" ? FILENAME : name, rc != "" && rc != 0, "exit status " rc)
    }
}
