"""12345 work-order file import (CSV / XLSX exports of the hotline system)."""
