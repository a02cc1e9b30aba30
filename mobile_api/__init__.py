"""The mobile API (``/api/mobile/v1``) for field engineers and approvers: a
blueprint over the same services as the web API. Its endpoints arrive with the
after-sales and approval work; the platform's bearer tokens already serve it."""
