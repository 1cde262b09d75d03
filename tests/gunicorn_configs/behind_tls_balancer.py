# A TLS-terminating load balancer in front, saying so in a header.
bind = ["127.0.0.1:8000"]
workers = 3
forwarded_allow_ips = "10.0.0.0/8,127.0.0.1"
secure_scheme_headers = {
    "X-FORWARDED-PROTOCOL": "ssl",
    "X-FORWARDED-PROTO": "https",
    "X-FORWARDED-SSL": "on",
}
proxy_allow_ips = None
limit_request_line = 8190
limit_request_fields = 100
