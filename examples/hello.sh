#!/bin/sh
# A first job: prints a few lines, writes an output file and a JSON result.
echo "hello from job $PLUS_JOB_ID (attempt $PLUS_ATTEMPT)"
echo "params: $PLUS_PARAMS"
for i in 1 2 3; do
  echo "working... step $i of 3"
  sleep 0.3
done
echo "a report" > "$PLUS_OUTPUT_DIR/report.txt"
echo '{"steps": 3, "ok": true}' > "$PLUS_RESULT_FILE"
echo "done"
