from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class DurableConfig(AppConfig):
    name = "django_durable"
    label = "django_durable"
    verbose_name = "Durable objects"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .checks import check_durable_settings  # importing registers the checks
        from .scheduler import running_under_daphne, start_with_daphne

        if running_under_daphne():
            # daphne runs no system checks: refuse to start rather than fail at the
            # first connection, as runserver would.
            errors = [e for e in check_durable_settings() if e.is_serious()]
            if errors:
                raise ImproperlyConfigured(
                    "DURABLE_OBJECTS is misconfigured:\n" + "\n".join(str(e) for e in errors)
                )
        start_with_daphne()
        from .lifespan import install_daphne_shutdown

        install_daphne_shutdown()
