"""Configuration templates of the comparison paths' processes (str.format fields): the
origin nginx, the nginx reverse-proxy hop, nginx's stream proxy for TCP and UDP, and sshd
for ssh -R."""

NGINX_COMMON = """daemon off;
{user}
master_process on;
worker_processes {workers};
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 75s; keepalive_requests 100000000;
  default_type application/octet-stream;
  client_body_temp_path {shm}/{name}-body;
  proxy_temp_path {dir}/{name}-proxy; fastcgi_temp_path {dir}/{name}-fcgi;
  uwsgi_temp_path {dir}/{name}-uwsgi; scgi_temp_path {dir}/{name}-scgi;
{server}
}}
"""

ORIGIN_SERVER = """  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {dir}/www;
    location = / {{ try_files /index.html =404; }}
    location = /big {{ }}
    location = /origin_status {{ stub_status; }}
    location /upload/ {{
      root {shm}; dav_methods PUT; create_full_put_path on; client_max_body_size 0;
    }}
  }}"""

PROXY_SERVER = """  upstream origin {{ server 127.0.0.1:{origin}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    client_max_body_size 0;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }}
  }}"""

NGINX_STREAM = """daemon off;
{user}
master_process on;
worker_processes {workers};
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
load_module {module};
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
stream {{
{servers}
}}
"""

SSHD_CONFIG = """Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
GatewayPorts no
UsePAM no
StrictModes no
PrintMotd no
"""
