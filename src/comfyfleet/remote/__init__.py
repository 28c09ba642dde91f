"""Remote adapter: SSH exec, tunnels, keys and ssh config."""
