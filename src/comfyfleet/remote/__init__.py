"""Remote adapter: SSH to instances (asyncssh) — keys, pinned host keys, exec, tunnels, config.

    target      SshTarget (an instance's SSH endpoint + our files); where those files live
    keys        the comfyfleet ed25519 key (ensure_key) or the user's (load_key)
    hostkeys    per-instance known_hosts: pinned on first contact, changes refused
    ssh         connect() -> SshConnection (keepalive), error translation
    banner      banner_check(): does an SSH server answer yet?
    commands    quoting, RemoteCommand, run() -> Completed, stream() -> exit code
    layout      detect_layout() -> InstanceLayout (Vast's image, other images, overrides)
    manage      gpu_status, disk_usage, processes, tail_log/follow_log, restart_comfy, pip
    tunnel      Tunnel / TunnelGroup (self-healing forwards), wait_http_ready
    tunnel_state  the state value and the JSON file other processes read
    sshconfig   ~/.ssh/config Include line, per-instance generated files, pruning
    interactive openssh_command() for the real ssh, interactive_shell() built in

Nothing here knows Vast: the layers above map an instance to an `SshTarget` and pass a
`resolve()` callback to tunnels. Every asyncssh / OS error leaves as an `errors.RemoteError`.
Modules are imported one by one (asyncssh is not loaded by importing this package).
"""
