"""Real protocol peers for tests: local APNs, FCM and Web Push servers (and SMPP peers)."""
