"""The POSIX sh scripts comfyfleet runs on instances: the layout probe and the restart fallback.

Both are fixed texts; values reach them only as positional arguments or quoted assignments
(`commands.quote`), never pasted into the script body.

The probe reports facts, not decisions (`layout.decide` makes those): one record per fact,
`name=value` terminated by a NUL byte, so values need no escaping in sh (paths and env values
cannot hold NUL). From /etc/environment it reads only the variables it looks for: that file
also holds the instance's tokens, which have no business travelling here.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from comfyfleet.remote.commands import RemoteCommand, quote

PROBE_KEYS = (
    "WORKSPACE",
    "DATA_DIRECTORY",
    "COMFYUI_ARGS",
    "COMFYUI_API_BASE",
    "PORTAL_CONFIG",
    "VIRTUAL_ENV",
)

# $1: the user's ComfyUI folder (or ""), $2: the user's venv (or ""), $3: the environment file.
PROBE = r"""
r() { printf '%s=%s\0' "$1" "$2"; }
envfile=$3
etc_env() {
  [ -r "$envfile" ] || return 0
  sed -n "s/^[[:space:]]*\(export[[:space:]][[:space:]]*\)\{0,1\}$1=//p" "$envfile" | tail -n 1
}
unq() {
  case $1 in
    \"*\") v=${1#\"}; printf '%s' "${v%\"}" ;;
    \'*\') v=${1#\'}; printf '%s' "${v%\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}
for k in KEYS; do
  eval "v=\${$k-}"
  [ -n "$v" ] && r "env.$k" "$v"
  e=$(etc_env "$k")
  [ -n "$e" ] && r "etc.$k" "$e"
done
r home "${HOME-}"
ws=${WORKSPACE:-$(unq "$(etc_env WORKSPACE)")}
dd=${DATA_DIRECTORY:-$(unq "$(etc_env DATA_DIRECTORY)")}
root=
case $ws in
  /workspace|/workspace/) r image_root / ;;
  */workspace|*/workspace/) root=${ws%/}; root=${root%/workspace}; r image_root "$root" ;;
esac
venv_at() { [ -n "$1" ] && [ -x "$1/bin/python" ] && r venv "$1"; }
file_at() { [ -n "$1" ] && [ -f "$1" ] && r file "$1"; }
for d in "$1" "${ws:+$ws/ComfyUI}" "${dd:+${dd%/}/ComfyUI}" /workspace/ComfyUI /opt/ComfyUI \
    /ComfyUI "${HOME:+$HOME/ComfyUI}"; do
  [ -n "$d" ] || continue
  r checked "$d"
  [ -d "$d" ] || continue
  if [ -f "$d/main.py" ] || { [ -d "$d/models" ] && [ -d "$d/custom_nodes" ]; }; then
    r comfy "$d"
  fi
  venv_at "$d/venv"; venv_at "$d/.venv"
  file_at "$d/comfyui.log"; file_at "$d/user/comfyui.log"
done
venv_at "$2"; venv_at "$root/venv/main"; venv_at /venv/main; venv_at "${VIRTUAL_ENV-}"
venv_at /opt/conda
file_at "$root/var/log/portal/comfyui.log"; file_at /var/log/portal/comfyui.log
{ [ -f "$root/etc/portal.yaml" ] || [ -f /etc/portal.yaml ]; } && r portal yes
if command -v supervisorctl >/dev/null 2>&1; then
  t=; command -v timeout >/dev/null 2>&1 && t="timeout 20"
  out=$($t supervisorctl status comfyui 2>&1)
  r supervisor.status "$?"
  r supervisor.output "$out"
fi
exit 0
""".replace("KEYS", " ".join(PROBE_KEYS))


ENVIRONMENT_FILE = PurePosixPath("/etc/environment")


def probe_command(
    comfy_dir: PurePosixPath | None,
    venv: PurePosixPath | None,
    environment_file: PurePosixPath = ENVIRONMENT_FILE,
) -> RemoteCommand:
    """`sh -c PROBE` with the user's overrides and the image's environment file as arguments."""
    return RemoteCommand.of(
        "sh",
        "-c",
        PROBE,
        "comfyfleet-probe",
        str(comfy_dir or ""),
        str(venv or ""),
        environment_file,
    )


# Stop every ComfyUI `main.py` of the folder (SIGTERM, then SIGKILL after 15 s), then start
# it again detached from the session. A process counts when one of its arguments is
# "<dir>/main.py", or "main.py" while it runs in <dir>; /proc is read directly, so no procps
# is needed, and this script's own arguments never match (it is no argument of its own).
_FALLBACK = r"""
pids=
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$$" ] && continue
  args=$(tr '\0' '\n' < "$p/cmdline" 2>/dev/null) || continue
  if printf '%s\n' "$args" | grep -qxF -e "$dir/main.py"; then
    pids="$pids $pid"
  elif printf '%s\n' "$args" | grep -qxF -e main.py \
      && [ "$(readlink "$p/cwd" 2>/dev/null)" = "$dir" ]; then
    pids="$pids $pid"
  fi
done
alive() {
  for pid in $pids; do
    [ -r "/proc/$pid/stat" ] || continue
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)
    [ -n "$state" ] && [ "$state" != Z ] && return 0
  done
  return 1
}
if [ -n "$pids" ]; then
  kill $pids 2>/dev/null
  i=0
  while alive && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
  alive && kill -9 $pids 2>/dev/null
fi
cd "$dir" || exit 1
s=; command -v setsid >/dev/null 2>&1 && s=setsid
nohup $s "$py" main.py "$@" >>"$log" 2>&1 </dev/null &
echo "comfyui: started (pid $!)"
"""


def fallback_restart(
    comfy_dir: PurePosixPath, python: PurePosixPath, log: PurePosixPath, args: list[str]
) -> str:
    """The restart command for images without supervisor: stop main.py, start it again."""
    assignments = f"dir={quote(comfy_dir)} py={quote(python)} log={quote(log)}"
    return f"{assignments} sh -c {quote(_FALLBACK)} comfyfleet-restart " + " ".join(
        quote(a) for a in args
    )
