"""The server's access POLICY comes from the proto's (library.v1.access) method option."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from protobuf import DescService
from protobuf.wkt import FileDescriptorSet
from protobuf.wkt.google.protobuf import descriptor_pb, timestamp_pb
from protobuf.wkt.google.protobuf.descriptor_pb import FileDescriptorProto, MethodOptions

from server.domain.auth import Access
from server.gen.library.v1 import access_pb, library_connect, library_pb
from server.rpc.auth import POLICY, policy_of

# API.md's "who may call" column, written out by hand: the proto must say the same.
API_MD = {
    "GetBook": Access.ANYONE,
    "ListBooks": Access.ANYONE,
    "CreateBook": Access.LIBRARIAN,
    "DeleteBook": Access.LIBRARIAN,
    "CheckoutBook": Access.SIGNED_IN,
    "ReturnBook": Access.SIGNED_IN,
    "ListLoans": Access.SIGNED_IN,
    "CreateMember": Access.LIBRARIAN,
    "WhoAmI": Access.SIGNED_IN,
    "WatchBooks": Access.ANYONE,
    "ImportBooks": Access.LIBRARIAN,
    "SearchBooks": Access.ANYONE,
}


def test_policy_is_what_the_api_contract_says() -> None:
    assert POLICY == API_MD


def test_policy_is_read_from_each_methods_option() -> None:
    for method in library_connect.LibraryService.desc().methods:
        options = method.proto.options
        assert options is not None, method.name
        assert options[access_pb.ext_access].name == POLICY[method.name].name


def _service_with(edit: Callable[[Any], None], method: str = "CreateBook") -> DescService:
    """LibraryService rebuilt from a copy of library.proto's descriptor, ``method`` edited."""
    proto: FileDescriptorProto = copy.deepcopy(library_pb.desc().proto)
    (target,) = (m for m in proto.service[0].method if m.name == method)
    edit(target)
    registry = FileDescriptorSet(
        file=[
            descriptor_pb.desc().proto,
            timestamp_pb.desc().proto,
            access_pb.desc().proto,
            proto,
        ]
    ).to_registry()
    service = registry.service(library_connect.LibraryService.desc().type_name)
    assert service is not None
    return service


def _drop_options(method: Any) -> None:
    method.clear_field("options")


def _empty_options(method: Any) -> None:
    method.options = MethodOptions()


def _unspecified(method: Any) -> None:
    method.options[access_pb.ext_access] = access_pb.Access.UNSPECIFIED


def test_a_rebuilt_descriptor_gives_the_same_policy() -> None:
    assert policy_of(_service_with(lambda method: None)) == POLICY


def test_the_option_decides_the_access() -> None:
    def anyone(method: Any) -> None:
        method.options[access_pb.ext_access] = access_pb.Access.ANYONE

    assert policy_of(_service_with(anyone))["CreateBook"] is Access.ANYONE


@pytest.mark.parametrize("edit", [_drop_options, _empty_options, _unspecified])
def test_a_method_without_the_option_is_refused(edit: Callable[[Any], None]) -> None:
    with pytest.raises(ValueError, match=r"no access policy for \['CreateBook'\]"):
        policy_of(_service_with(edit))
