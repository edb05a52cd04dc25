"""openstacksdk and keystoneauth failures translated into :class:`ProviderError` (refusals)
and :class:`TransientProviderError` (worth a retry), with a reason a person understands."""

from __future__ import annotations

import keystoneauth1.exceptions as ks_exc
import openstack.exceptions as os_exc

from slices_blueprint.providers.base import (
    ProviderError,
    TransientProviderError,
    connect_reason,
)


def translate_error(exc: BaseException, doing: str) -> ProviderError | None:
    """Our error for an openstacksdk/keystoneauth failure while ``doing``; None if unknown."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, os_exc.SDKException) and isinstance(exc.__context__, ks_exc.ClientException):
        exc = exc.__context__  # the SDK re-raised keystoneauth's error as a bare SDKException
    if isinstance(exc, ks_exc.SSLError):
        return ProviderError(f"TLS failed while {doing}: {exc}")
    if isinstance(exc, ks_exc.ConnectTimeout):
        return TransientProviderError(f"the cloud did not answer in time while {doing}")
    if isinstance(exc, ks_exc.ConnectionError):
        return TransientProviderError(
            f"could not connect to the cloud while {doing} ({connect_reason(exc)})"
        )
    if isinstance(exc, ks_exc.DiscoveryFailure):
        return _discovery_error(exc, doing)
    if isinstance(exc, ks_exc.Unauthorized):
        return _unauthorized(doing)
    if isinstance(exc, ks_exc.HttpError):
        return _http_error(exc.http_status, exc.message, doing)
    if isinstance(exc, os_exc.HttpException):
        return _http_error(exc.status_code, str(exc.details or exc.message), doing)
    if type(exc) is Exception:  # keystoneauth's plugins say "password is a required attribute"
        return ProviderError(f"the cloud settings are incomplete ({doing}): {exc}")
    if isinstance(exc, os_exc.DuplicateResource):
        return ProviderError(f"{exc} (while {doing}): use its id instead of its name")
    if isinstance(exc, ks_exc.ClientException | os_exc.SDKException):
        return ProviderError(f"the cloud could not be used while {doing}: {exc}")
    return None


def _discovery_error(exc: ks_exc.DiscoveryFailure, doing: str) -> ProviderError:
    """Version discovery fails both for an unreachable and for a wrong auth URL."""
    if "Unable to establish connection" in str(exc) or "timed out" in str(exc):
        return TransientProviderError(
            f"could not connect to the identity service while {doing} ({connect_reason(exc)})"
        )
    return ProviderError(f"no identity service answers at the auth_url while {doing}")


def _unauthorized(doing: str) -> ProviderError:
    return ProviderError(
        f"the cloud refused the credentials while {doing} (HTTP 401): "
        "check the user name, password and project"
    )


def _http_error(status: int | None, detail: str, doing: str) -> ProviderError:
    detail = detail.strip() or "no details"
    if status == 401:
        return _unauthorized(doing)
    if status in (403, 413) and "quota" in detail.lower():
        return ProviderError(f"quota exceeded while {doing}: {detail}")
    if status == 404:
        return ProviderError(f"not found while {doing}: {detail}")
    if status is None or status == 429 or status >= 500:
        return TransientProviderError(f"the cloud failed while {doing} (HTTP {status}): {detail}")
    return ProviderError(f"the cloud refused {doing} (HTTP {status}): {detail}")

