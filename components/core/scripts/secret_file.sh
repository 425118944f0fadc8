# shellcheck shell=bash
# One secret file on the Docker host (components/core/secrets.py): $VH_FILE_DIR/$VH_FILE_NAME, mode
# 0400, owned by $VH_FILE_OWNER (uid:gid of the container that reads it), in a root-only (0700) folder.
# The value arrives in $VH_SECRET_VALUE (the step's environment, or stdin over SSH) and reaches the helper
# container on its stdin through bash's printf builtin: it is never on a process's command line.
# A helper container, as for the data directories (storage.py): the deploy user needs only the Docker
# socket, no sudo and no write access to the data root. Written beside the old file, then renamed over it.
printf '%s' "$VH_SECRET_VALUE" | docker run --rm -i --network none --entrypoint /bin/sh \
  -v "$VH_FILE_DIR:/secrets" "$VH_HELPER_IMAGE" -c '
    set -eu
    umask 077
    cat > "/secrets/.$1.new"
    chown "$2" "/secrets/.$1.new"
    chmod 0400 "/secrets/.$1.new"
    mv -f "/secrets/.$1.new" "/secrets/$1"
    chmod 0700 /secrets' sh "$VH_FILE_NAME" "$VH_FILE_OWNER"
