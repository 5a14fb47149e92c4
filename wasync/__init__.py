"""wasync: keep WhatsApp conversations from WAHA and Evolution API in sync with a CRM database."""

__version__ = "0.1.0"
