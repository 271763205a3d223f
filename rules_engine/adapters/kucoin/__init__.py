"""The KuCoin adapter: signing, REST, WebSocket, level2 book sync, error table."""
