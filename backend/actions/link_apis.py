"""Linking API (issue 11): residents' link codes and bindings, partners' signed link confirmations. Cards are
linked on the partner's word (backend/actions/links.py), never by a resident typing a card number."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.actions import links, selectors
from backend.actions.apis import PartnerSubjectSerializer
from backend.actions.models import SubjectBinding, SubjectKind
from backend.core.pagination import cursor_pagination, paginated_response
from backend.core.parsers import JSONParser
from backend.core.throttling import PartnerRateThrottle
from backend.partners.auth import PartnerSignatureAuthentication
from backend.partners.permissions import IsSignedPartner

# --- bindings and partner-attested linking ---------------------------------------------------------------


class BindingSerializer(serializers.ModelSerializer):
    identifier = serializers.SerializerMethodField(help_text="Only the last four characters are kept.")

    class Meta:
        model = SubjectBinding
        fields = ["id", "kind", "identifier", "created_at"]

    def get_identifier(self, obj) -> str:
        return f"****{obj.identifier_last4}"


class BindingsView(APIView):
    pagination_class = cursor_pagination("-id")

    @extend_schema(operation_id="me_bindings_list", responses={200: BindingSerializer(many=True)})
    def get(self, request):
        """My linked cards and accounts (identifiers masked). Cards are linked through a partner's app with a
        link code (POST /me/link-codes), never by typing a card number here."""
        return paginated_response(self, selectors.binding_list(resident=request.user), BindingSerializer)


class BindingDetailView(APIView):
    @extend_schema(operation_id="me_bindings_delete_by_id", responses={204: None})
    def delete(self, request, binding_id: int):
        """Unlink one of my cards. What it earned stays credited; its later trips stay unclaimed."""
        links.binding_unlink(resident=request.user, binding_id=binding_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LinkCodeInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SubjectKind.choices)


class LinkCodeSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="8 characters without look-alikes; shown once, stored hashed.")
    kind = serializers.ChoiceField(choices=SubjectKind.choices)
    expires_at = serializers.DateTimeField()


class LinkCodesView(APIView):
    @extend_schema(
        operation_id="me_link_codes_create",
        request=LinkCodeInputSerializer,
        responses={201: LinkCodeSerializer},
        examples=[OpenApiExample("transit card", value={"kind": "transit_card"}, request_only=True)],
    )
    def post(self, request):
        """A one-time code to link a card or account: type it into the partner's app, where the card is
        registered to you; the partner confirms the link. Valid 10 minutes, single use; at most 5 open at once
        (429 `too_many_link_codes`)."""
        serializer = LinkCodeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row, code = links.link_code_create(resident=request.user, kind=serializer.validated_data["kind"])
        return Response(
            LinkCodeSerializer({"code": code, "kind": row.kind, "expires_at": row.expires_at}).data,
            status=status.HTTP_201_CREATED,
        )


class PartnerLinkInputSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=32)
    subject = PartnerSubjectSerializer()


class PartnerUnlinkInputSerializer(serializers.Serializer):
    subject = PartnerSubjectSerializer()


class PartnerLinkResultSerializer(serializers.Serializer):
    binding_id = serializers.IntegerField()
    claimed = serializers.DictField(
        child=serializers.IntegerField(), help_text="Unclaimed actions of the last 7 days now processed, by status."
    )


class PartnerLinksView(APIView):
    authentication_classes = [PartnerSignatureAuthentication]
    permission_classes = [IsSignedPartner]
    throttle_classes = [PartnerRateThrottle]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="partner_links_confirm",
        request=PartnerLinkInputSerializer,
        responses={201: PartnerLinkResultSerializer},
        examples=[
            OpenApiExample(
                "confirm",
                value={"code": "K7QX4MHT", "subject": {"kind": "transit_card", "identifier": "3100123456789012"}},
                request_only=True,
            )
        ],
    )
    def post(self, request):
        """Confirm a resident's link code typed into your app for the card registered to them there (signed).
        The card is linked to the code's resident (moved from anyone else: you are the authority on who holds
        it) and its unclaimed actions of the last 7 days are claimed now. Errors: 404 `link_code_invalid`
        (unknown, expired or used: one answer), 400 `subject_kind_mismatch`, 403 `subject_kind_not_allowed`."""
        serializer = PartnerLinkInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        binding, claimed = links.link_confirm(
            partner=request.auth,
            nonce=request.headers.get("X-Nonce", ""),
            code=data["code"],
            kind=data["subject"]["kind"],
            identifier=data["subject"]["identifier"],
        )
        return Response(
            PartnerLinkResultSerializer({"binding_id": binding.id, "claimed": claimed}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(operation_id="partner_links_end", request=PartnerUnlinkInputSerializer, responses={204: None})
    def delete(self, request):
        """End the live link of a card or account (lost card, closed account), signed. Credits already earned
        stay. 404 `not_found` when it has none."""
        serializer = PartnerUnlinkInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subject = serializer.validated_data["subject"]
        links.link_end(
            partner=request.auth,
            nonce=request.headers.get("X-Nonce", ""),
            kind=subject["kind"],
            identifier=subject["identifier"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
