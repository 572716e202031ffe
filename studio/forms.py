"""Django forms for parsing and rendering only: the writes and their rules live in the services, whose
`ServiceError.fields` are put back on these forms with `add_service_errors`."""

from __future__ import annotations

from django import forms

from core.errors import ServiceError


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ProjectEditForm(ProjectForm):
    archived = forms.BooleanField(required=False, help_text="Archived projects are hidden from the main list "
                                                            "and cannot start new generations.")


class UploadForm(forms.Form):
    file = forms.FileField()


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, initial="", widget=forms.TextInput(attrs={"placeholder": "e.g. laptop CLI"}))


def add_service_errors(form: forms.Form, exc: ServiceError) -> None:
    """Put a service's field errors next to the fields they name; anything else becomes a form error."""
    placed = False
    for name, messages in exc.fields.items():
        if name in form.fields:
            for message in messages:
                form.add_error(name, message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)
