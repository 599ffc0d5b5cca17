"""Upload handlers that enforce size limits while the body streams in, not after it has all arrived."""

from django.core.files.uploadhandler import FileUploadHandler

from backend.core.errors import ApplicationError


class FileSizeLimitUploadHandler(FileUploadHandler):
    """Put first in `request.upload_handlers`: refuses a multipart body whose Content-Length exceeds
    `max_body_bytes`, and any file part past `max_file_bytes` as soon as that many bytes have streamed in.
    Returns the chunk unchanged otherwise, so the next handler (memory / temporary file) stores it."""

    def __init__(self, *, max_file_bytes: int, max_body_bytes: int, error: ApplicationError, request=None):
        super().__init__(request)
        self.max_file_bytes = max_file_bytes
        self.max_body_bytes = max_body_bytes
        self.error = error
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > self.max_body_bytes:
            raise self.error
        return None

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_file_bytes:
            raise self.error
        return raw_data

    def file_complete(self, file_size):
        return None
