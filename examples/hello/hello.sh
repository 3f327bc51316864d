#!/bin/sh
# Answers with the architecture it runs on and the one its RUN step was built on.
echo "$GREETING: running on $(uname -m), built on $(cat /etc/hello/built-on)"
