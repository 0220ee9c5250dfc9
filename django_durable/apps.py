import sys

from django.apps import AppConfig


class DurableConfig(AppConfig):
    """Registers the checks and metrics, and hooks start-up and shutdown into daphne."""

    name = "django_durable"
    label = "django_durable"
    verbose_name = "Durable objects"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Refuse bad settings under daphne; start the alarm poller with the reactor."""
        from .checks import refuse_to_serve  # importing registers the checks
        from .prometheus import register as register_metrics

        # Daphne's command line (``daphne``, ``python -m daphne``) runs no system checks:
        # refuse to start there. Management commands (``check``, ``migrate``,
        # ``runserver``...) import daphne too but run the checks and print them.
        if "daphne.cli" in sys.modules:
            refuse_to_serve()
        register_metrics()  # in prometheus_client's REGISTRY, if it is installed
        from .lifespan import install_daphne_shutdown, install_daphne_timers, start_with_daphne

        start_with_daphne()
        install_daphne_timers()

        install_daphne_shutdown()
