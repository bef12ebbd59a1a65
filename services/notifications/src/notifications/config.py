from emporium_kit.settings import ServiceSettings, env_prefix


class NotificationsSettings(ServiceSettings):
    model_config = env_prefix("notifications")
    port: int = 8005
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    mail_from: str = "Emporium <orders@emporium.local>"
    smtp_idle_seconds: float = 5.0  # a kept SMTP session is closed once idle this long
