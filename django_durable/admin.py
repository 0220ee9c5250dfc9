"""A read-only Django admin for what durable objects keep in the database, and the live
status page for staff.

- Storage entries and alarms: listed and shown, never added, changed or deleted here
  (the objects own them: a row changed behind an object's back would contradict what
  its instance holds in memory). Filter by class and, once a class is chosen, by object
  id; search by object key. Keys and values are decoded with the package's own decoder
  for display.
- The status page (``admin/django_durable/storageentry/status/``, linked from this
  app's admin index and from both lists): the live and hibernated objects as
  :func:`django_durable.status.status_report` sees them, for staff users.
"""

from __future__ import annotations

import pprint
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from .encoding import decode
from .models import Alarm, StorageEntry
from .registry import registry
from .status import short_id, status_report

#: Characters of a decoded value shown in a list (the detail page shows it whole).
PREVIEW_CHARS = 120
#: Object ids offered by the object id filter (the search box finds any other).
OBJECT_ID_CHOICES = 100


def decoded(data: bytes | memoryview | None) -> str:
    """A stored value as Python would print it, or why it cannot be read."""
    if data is None:
        return "-"
    try:
        return pprint.pformat(decode(bytes(data)), width=100, sort_dicts=False)
    except Exception as exc:
        return f"<cannot decode {len(bytes(data))} bytes: {exc}>"


def preview(text: str) -> str:
    """A value, decoded and cut for a list."""
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def split_key(object_key: str) -> tuple[str, str]:
    """An object key's class and id."""
    class_name, _, object_id = object_key.partition("/")
    return class_name, object_id


class ClassFilter(admin.SimpleListFilter):
    """The project's durable classes, by ``durable_name``."""

    title = "class"
    parameter_name = "class"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The choices of the filter."""
        return [(name, name) for name in sorted(registry)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The rows the filter keeps."""
        value = self.value()
        if value:
            return queryset.filter(object_key__startswith=f"{value}/")
        return queryset


class ObjectIdFilter(admin.SimpleListFilter):
    """The object ids of the chosen class (the first 100; search for the others)."""

    title = "object id"
    parameter_name = "object_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The choices of the filter."""
        class_name = request.GET.get(ClassFilter.parameter_name)
        if not class_name:
            return []
        keys = (
            model_admin.model.objects.filter(object_key__startswith=f"{class_name}/")
            .order_by("object_key")
            .values_list("object_key", flat=True)
            .distinct()[:OBJECT_ID_CHOICES]
        )
        return [(split_key(k)[1], split_key(k)[1]) for k in keys]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The rows the filter keeps."""
        value = self.value()
        class_name = request.GET.get(ClassFilter.parameter_name)
        if value is not None and class_name:
            return queryset.filter(object_key=f"{class_name}/{value}")
        return queryset


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Viewing only: staff with the view (or change) permission see the rows."""

    list_filter = (ClassFilter, ObjectIdFilter)
    search_fields = ("object_key",)
    list_per_page = 50
    change_list_template = "admin/django_durable/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Read only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Read only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Read only."""
        return False

    @admin.display(description="class")
    def object_class(self, obj: Any) -> str:
        """The object's class."""
        return split_key(obj.object_key)[0]

    @admin.display(description="object id")
    def object_id_display(self, obj: Any) -> str:
        """The object's id."""
        return split_key(obj.object_key)[1]


@admin.register(StorageEntry)
class StorageEntryAdmin(ReadOnlyAdmin):
    """Storage rows, read only, values decoded."""

    list_display = ("object_class", "object_id_display", "storage_key", "value_preview")
    fields = ("object_key", "object_class", "object_id_display", "storage_key", "value_decoded")
    readonly_fields = fields
    ordering = ("object_key", "key")

    @admin.display(description="key")
    def storage_key(self, obj: StorageEntry) -> str:
        """The entry's key as text."""
        return bytes(obj.key).decode("utf-8", "replace")

    @admin.display(description="value")
    def value_preview(self, obj: StorageEntry) -> str:
        """The value, short."""
        return preview(decoded(obj.value))

    @admin.display(description="value (decoded)")
    def value_decoded(self, obj: StorageEntry) -> str:
        """The value, whole."""
        return decoded(obj.value)

    def get_urls(self) -> list[URLPattern]:
        """Adds the live status page."""
        status = path(
            "status/",
            self.admin_site.admin_view(self.status_view),
            name="django_durable_status",
        )
        return [status, *super().get_urls()]

    def status_view(self, request: HttpRequest) -> HttpResponse:
        """The live status page. A sync view (the admin's are), so the report is made on
        the server's event loop through ``async_to_sync``: that is where the objects are."""
        report = async_to_sync(status_report)()
        here = report.get("holder") or report.get("process")
        for obj in report["objects"]:
            owner = obj.get("owner")
            obj["owner_short"] = short_id(owner) if owner else ""
            obj["owner_here"] = bool(owner) and owner == here
            obj["tags_text"] = ", ".join(f"{t}={n}" for t, n in obj["tags"].items())
        context = {
            **self.admin_site.each_context(request),
            "title": "Durable objects: live status",
            "opts": self.model._meta,
            "report": report,
            "process_short": short_id(here or ""),
            "storage_url": reverse("admin:django_durable_storageentry_changelist"),
            "alarms_url": reverse("admin:django_durable_alarm_changelist"),
        }
        return TemplateResponse(request, "admin/django_durable/status.html", context)


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdmin):
    """Alarm rows, read only."""

    list_display = (
        "object_class",
        "object_id_display",
        "scheduled_at",
        "retry_count",
        "claimed_until",
    )
    fields = (
        "object_key",
        "consumer",
        "object_id",
        "scheduled_at",
        "retry_count",
        "version",
        "claimed_until",
    )
    readonly_fields = fields
    ordering = ("scheduled_at",)
    date_hierarchy = "scheduled_at"
