# /etc/profile.d/id1.sh: at login, tell approvers and admins of the ID-1 agent what awaits them.
#
# Sourced by login shells, so: POSIX sh, everything in a subshell (no variable, option or `exit`
# leaks into the login shell), interactive shells only (scp, rsync and `ssh host cmd` stay quiet),
# and never more than about 1 s, even when the agent is down or hangs.
#
#   ID1_APPROVER_GROUPS  groups whose members are told (default: id1-approver), space-separated
#   ID1_ADMIN_GROUPS     same for admins (default: id1-admin); root is always told
#   ID1_LOGIN_HINT       "off" silences it; "always" also runs it in non-interactive shells
#   ID1_SOCKET           the agent's socket, as for every `id1` command

case "${ID1_LOGIN_HINT:-}" in
    off) ;;
    *)
        case "$-:${ID1_LOGIN_HINT:-}" in
            *i*:* | *:always)
                (
                    member=
                    if [ "$(id -u 2>/dev/null)" = 0 ]; then
                        member=yes
                    else
                        for group in $(id -Gn 2>/dev/null); do
                            for wanted in ${ID1_APPROVER_GROUPS:-id1-approver} ${ID1_ADMIN_GROUPS:-id1-admin}; do
                                [ "$group" = "$wanted" ] && member=yes
                            done
                        done
                    fi
                    [ -n "$member" ] || exit 0
                    command -v id1 >/dev/null 2>&1 || exit 0
                    if command -v timeout >/dev/null 2>&1; then
                        # timeout signals id1's whole process group: nothing it started outlives it.
                        answer=$(timeout -k 0.1 0.9 id1 status --json </dev/null 2>/dev/null)
                    else
                        answer=$(id1 status --json </dev/null 2>/dev/null)
                    fi
                    if [ $? -ne 0 ] || [ -z "$answer" ]; then
                        echo "id1: the update agent is not answering (see: id1 status)"
                        exit 0
                    fi
                    pending=$(printf '%s' "$answer" | tr -d '\n' \
                        | sed -n 's/.*"pending_approval"[[:space:]]*:[[:space:]]*{\([^}]*\)}.*/\1/p')
                    [ -n "$pending" ] || exit 0
                    id=$(printf '%s' "$pending" | sed -n 's/.*"id"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
                    changes=$(printf '%s' "$pending" | sed -n 's/.*"changes"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p')
                    case "$changes" in
                        1) what="1 update awaits" ;;
                        "") what="updates await" ;;
                        *) what="$changes updates await" ;;
                    esac
                    echo "id1: $what approval on this host (${id:-pending})."
                    echo "     review: id1 updates   approve: id1 approve   reject: id1 reject --reason ...   dashboard: id1 tui"
                )
                ;;
        esac
        ;;
esac
